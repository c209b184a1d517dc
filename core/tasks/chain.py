"""The "Long video" recipe: text to video, then N continuations, then an optional upscale, as one job.

Every part is built by :func:`core.tasks.registry.parse_request`, so any model of its task works: Wan or
MAGI-1 for the text-to-video part, SkyReels-V2 DF or MAGI-1 for the continuations (a MAGI-1 first part
is continued by the same model unless another is named). Each part runs through its own task with its
outputs in the job's folder (``outputs/chains/<name>/``, kept), its stages prefixed ``part i/n`` on the one
progress bar (and its previews shown on the chain's job); the last part's video
(which holds every earlier part) is copied into ``outputs/`` with a sidecar record that lists every
part. The copy keeps the last part's own record in its mp4 metadata.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.color_match import lab_stats, match_video_tail
from core.device_models import DeviceModels, Worker
from core.interpolate import INTERPOLATORS, check_interpolator, interpolate_video
from core.jobs import Job
from core.outputs import (
    base_record,
    new_output_path,
    record_extras,
    save_output,
    sidecar_path,
    write_json_atomic,
)
from core.settings import Settings
from core.tasks.registry import Task, parse_request, register, task_for
from core.validation import MAX_SEED, ConfigError, as_choice, as_float, as_int, as_seed, as_text
from core.video_input import resampled_count
from core.video_io import probe_video, read_frames, temp_path_for, write_video
from weights.registry import cards_for, get_card

DEFAULT_COLOR_MATCH = 0.8
"""Colour matching's default strength in a chain (on; 0 turns it off)."""


@dataclass(frozen=True)
class ChainRequest:
    """Text to video (``t2v``: a text-to-video request mapping; with an ``image``, image to video),
    extended ``continuations`` times by ``seconds`` each with ``continue_model`` (default: the first
    part's model when it also continues, as MAGI-1 does, else the first continuation model), then
    upscaled ``upscale_scale``x if ``upscale_model`` is set."""

    t2v: dict[str, Any]
    continuations: int = 1
    continue_model: str | None = None
    continue_prompt: str | None = None
    seconds: float = 0.0
    upscale_model: str | None = None
    upscale_scale: int = 4
    prompts: tuple[str, ...] | None = None
    """One prompt per part, in order (the first clip, then each continuation); a blank or missing one keeps
    the prompt of the part before (the first clip's: ``t2v``'s prompt; a continuation's: ``continue_prompt``,
    which defaults to the first clip's)."""
    seeds: tuple[int, ...] | None = None
    """One seed per part, in order; -1 or missing: the first clip's ``t2v`` seed, a continuation's derived
    from the first clip's (its seed + the part's index)."""
    color_match: float = DEFAULT_COLOR_MATCH
    """How far each continuation's new frames are moved to the first clip's colour and brightness (LAB
    mean and spread; 0 = off, 1 = fully)."""
    interpolate: str | None = None
    """A frame interpolation method run on the final video (doubles its frames and fps), or None."""

    task = "chain"

    def __post_init__(self) -> None:
        if not isinstance(self.t2v, dict):
            raise ConfigError("chain: t2v must be a text-to-video request mapping")
        set_ = object.__setattr__
        set_(self, "continuations", as_int("continuations", self.continuations, low=0, high=20))
        set_(self, "prompts", self._per_part("prompts", self.prompts, lambda i, v: as_text(f"prompt {i}", v)))
        set_(self, "seeds", self._per_part("seeds", self.seeds, lambda i, v: as_seed(v)))
        set_(self, "color_match", as_float("color_match", self.color_match, low=0.0, high=1.0))
        if self.interpolate is not None:
            set_(self, "interpolate", as_choice("interpolate", self.interpolate, INTERPOLATORS))
        first = self.first
        set_(self, "seconds", as_float("seconds per continuation", self.seconds, low=0.0, high=60.0))
        continue_ids = [card.id for card in cards_for("continue", dev=True)]
        model = self.continue_model or (first.model if first.model in continue_ids else continue_ids[0])
        set_(self, "continue_model", as_choice("continue model", model, continue_ids))
        set_(self, "continue_prompt", self.continue_prompt or first.prompt)
        if self.interpolate is not None:
            check_interpolator(self.interpolate)
        if self.upscale_model is not None:
            upscale_ids = [card.id for card in cards_for("upscale", dev=True)]
            as_choice("upscale model", self.upscale_model, upscale_ids)
            set_(self, "upscale_scale", as_int("upscale scale", self.upscale_scale, low=2, high=4))
        if self.continuations == 0 and self.upscale_model is None:
            raise ConfigError("a long video needs at least one continuation or an upscale")
        try:
            parts = self.planned_parts()
        except ConfigError as error:
            raise ConfigError(f"a later part of the long video: {error}") from error
        if self.continuations:
            self._check_first_part_long_enough(parts[1])

    def _check_first_part_long_enough(self, continuation: Any) -> None:
        """Refuse a first clip too short for the continuation model to start from, as the continuation
        would once the text-to-video part ran: its frames are converted to the continuation model's fps
        (:func:`core.video_input.open_input`), then must cover the overlap (SkyReels-V2) or one chunk
        (MAGI-1)."""
        first = self.first
        need = continuation.min_input_frames
        have = converted_frames(first.frames, first.card.fps, continuation.card.fps)
        if have >= need:
            return
        fps = continuation.card.fps
        at_fps = "" if fps == first.card.fps else f" ({have} at the continuation's {fps} fps)"
        longer = [n for n in first.frame_choices() if converted_frames(n, first.card.fps, fps) >= need]
        fix = (
            f"raise the first clip's frames (t2v frames; the Long video tab's frame_count) to at least "
            f"{longer[0]}, or pick another continue_model"
            if longer
            else "pick another continue_model"
        )
        raise ConfigError(
            f"a long video: the first clip ({first.card.name}) has {first.frames} frames at "
            f"{first.card.fps} fps{at_fps}, too short for {continuation.card.name} to continue: its "
            f"{continuation.starts_from} "
            f"needs at least {need} frames; {fix}"
        )

    def _per_part(self, name: str, values: Any, check: Callable[[int, Any], Any]) -> tuple[Any, ...] | None:
        """``values`` (a list, one per part) checked, as a tuple; None stays None."""
        if values is None:
            return None
        if isinstance(values, str) or not isinstance(values, (list, tuple)):
            raise ConfigError(
                f"chain: {name} must be a list, one per part (the first clip, then each continuation)"
            )
        parts = 1 + self.continuations
        if len(values) > parts:
            raise ConfigError(
                f"chain: {len(values)} {name} for {parts} parts (the first clip and {self.continuations} "
                f"continuations): give at most {parts}, or raise continuations"
            )
        return tuple(check(index + 1, value) for index, value in enumerate(values))

    def part_prompt(self, index: int) -> str:
        """The prompt of part ``index`` (0: the first clip): its own, else the last one given before it."""
        given = [p for p in (self.prompts or ())[1 : index + 1] if p]
        if index == 0:
            return (self.prompts or ("",))[0] or self.t2v.get("prompt", "")
        return given[-1] if given else str(self.continue_prompt)

    def part_seed(self, index: int, first_seed: int) -> int:
        """The seed of continuation part ``index`` (from 1): its own, else derived from ``first_seed``."""
        seeds = self.seeds or ()
        if index < len(seeds) and seeds[index] >= 0:
            return seeds[index]
        return (first_seed + index) % (MAX_SEED + 1)

    @cached_property
    def first(self) -> Any:
        """The first part, validated once: text to video, or image to video when the ``t2v`` mapping names
        an ``image`` (its model must take one)."""
        own = {"prompt": self.part_prompt(0)}
        if self.seeds and self.seeds[0] >= 0:
            own["seed"] = self.seeds[0]
        task = "i2v" if self.t2v.get("image") else "t2v"
        model = self.t2v.get("model")
        card = get_card(model) if isinstance(model, str) else None
        if card is not None and not card.serves(task):
            takes = ", ".join(c.id for c in cards_for(task, dev=True))
            why = "starts from a picture: give a start image" if task == "t2v" else "makes video from text"
            raise ConfigError(f"{card.name} {why} (a long video from an image takes one of: {takes})")
        return parse_request(self.t2v | own | {"task": task})

    def continuation(self, index: int, video: str) -> Any:
        """Continuation part ``index`` (from 0), extending ``video``."""
        return parse_request(
            {
                "task": "continue",
                "model": self.continue_model,
                "video": video,
                "prompt": self.part_prompt(index + 1),
                "seconds": self.seconds,
                "seed": self.part_seed(index + 1, self.first.seed),
            }
        )

    def upscale(self, video: str) -> Any:
        """The upscale part of ``video``."""
        return parse_request(
            {
                "task": "upscale",
                "model": self.upscale_model,
                "video": video,
                "scale": self.upscale_scale,
                "seed": self.first.seed,
            }
        )

    def planned_parts(self) -> list[Any]:
        """Every part's request, validated: the later ones built on a one-frame placeholder clip of the
        first part's size (gone when this returns; each really extends the part before it), so that a part
        that cannot run (too short, a scale its model lacks, an upscale past the size cap) is refused when
        the chain is submitted, not once the earlier parts ran."""
        first = self.first
        with tempfile.TemporaryDirectory() as folder:
            clip = str(Path(folder) / "part.mp4")
            size = (first.height or 64, first.width or 64)
            write_video(Path(clip), np.zeros((1, *size, 3), np.uint8), first.card.fps)
            parts = [self.first, *(self.continuation(index, clip) for index in range(self.continuations))]
            if self.upscale_model is not None:
                parts.append(self.upscale(clip))
        return parts

    def with_seed(self) -> ChainRequest:
        """This chain with a concrete seed for its first part (the others derive theirs from it)."""
        seed = self.first.with_seed().seed
        return replace(
            self, t2v=self.t2v | {"seed": seed}, seeds=((seed, *self.seeds[1:]) if self.seeds else None)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **asdict(self)}


def converted_frames(frames: int, fps: float, to_fps: float) -> int:
    """How many frames a clip of ``frames`` at ``fps`` has once a continuation reads it at ``to_fps``
    (the rule of :func:`core.video_input.open_input`: frame times i / fps, the last one shown one period)."""
    return resampled_count([(frames - 1) / fps], fps, to_fps)


class PartJob:
    """The chain's job as one part sees it: stages prefixed ``part i/n:``, the same cancel."""

    def __init__(self, job: Job, index: int, count: int) -> None:
        self._job, self._prefix = job, f"part {index}/{count}: "
        self.id, self.request = job.id, None

    @property
    def cancel_requested(self) -> bool:
        return self._job.cancel_requested

    def check_cancelled(self) -> None:
        self._job.check_cancelled()

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        self._job.report(self._prefix + stage, step, total, self._prefix + detail if detail else "")

    def show_preview(self, path: str) -> None:
        self._job.show_preview(path)


def _new_chain_folder(chains_dir: Path, prompt: str, seed: int | None) -> Path:
    """A new folder for one chain's parts, created atomically (a name taken meanwhile moves to the next)."""
    while True:
        folder = new_output_path(chains_dir, "chain", prompt, seed, reserve=False).with_suffix("")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder


@dataclass(frozen=True)
class PartWorker:
    """The chain's worker as its parts see it: the same device and loaded models, outputs in the chain's
    folder."""

    settings: Settings
    device: torch.device
    models: DeviceModels


def run_chain(worker: Worker, job: Job, request: ChainRequest) -> dict[str, Any]:
    """Run every part of ``request`` on ``worker`` and save the last part's video as the chain's output."""
    first = request.first
    folder = _new_chain_folder(worker.settings.outputs_dir / "chains", first.prompt, first.seed)
    part_worker = PartWorker(replace(worker.settings, outputs_dir=folder), worker.device, worker.models)
    count = 1 + request.continuations + (request.upscale_model is not None)
    parts: list[dict[str, Any]] = []

    def run_part(part_request: Any) -> dict[str, Any]:
        part_job = PartJob(job, len(parts) + 1, count)
        mark = {"chain_part": {"index": len(parts) + 1, "of": count, "job_id": job.id}}
        with record_extras(mark):  # History shows it as a part, and hides it once the chain is done
            record = task_for(part_request).run(part_worker, part_job, part_request)
        parts.append(record)
        return record

    video = run_part(first)["path"]
    reference = lab_stats(read_frames(Path(video))) if request.color_match else None
    for index in range(request.continuations):
        record = run_part(request.continuation(index, video))
        video = record["path"]
        if reference is not None and record.get("added_frames"):
            job.report(f"part {len(parts)}/{count}: matching colours")
            match_video_tail(Path(video), record["added_frames"], reference, request.color_match, record)
            write_json_atomic(sidecar_path(Path(video)), record)
    if request.upscale_model is not None:
        video = run_part(request.upscale(video))["path"]
    interpolation = None
    if request.interpolate is not None:
        source = Path(video)
        video = str(source.with_name(f"{source.stem}-{request.interpolate}{source.suffix}"))
        interpolation = interpolate_video(
            source,
            Path(video),
            request.interpolate,
            on_frame=lambda n: job.report(f"interpolating frames ({request.interpolate})", n, 0),
            settings=worker.settings,
            device=worker.device,
        ).to_dict()
    return save_chain(worker.settings.outputs_dir, job, request, Path(video), parts, interpolation)


@register
class ChainTask(Task):
    """Long video: the parts run one after the other on one device, as one job."""

    name = "chain"
    request_type = ChainRequest

    def parts(self, request: ChainRequest) -> list[Any]:
        return request.planned_parts()

    def run(self, worker: Worker, job: Job, request: ChainRequest) -> dict[str, Any]:
        return run_chain(worker, job, request.with_seed())


def part_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the chain's record keeps of one part (its file by name: it lies in the job folder)."""
    keys = ("task", "model", "prompt", "seed", "frames", "added_frames", "time_s", "output", "color_match")
    summary = {k: record.get(k) for k in keys}
    request = record.get("request") or {}
    return summary | {k: request.get(k) for k in ("prompt", "seed") if summary[k] is None}


def save_chain(
    outputs: Path,
    job: Job,
    request: ChainRequest,
    video: Path,
    parts: list[dict[str, Any]],
    interpolation: dict[str, Any] | None = None,
) -> dict:
    """Copy the final part into ``outputs`` (atomically) with a record listing every part."""
    info = probe_video(video)
    record = base_record("chain", job.id) | {
        "request": request.to_dict(),
        "seed": request.first.seed,
        "frames": info.frames,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "parts": [part_summary(part) for part in parts],
        "color_match": {"strength": request.color_match, "reference": "part 1 (the first clip)"},
        "interpolation": interpolation,
        "time_s": round(sum(part.get("time_s", 0.0) for part in parts), 3),
        "job_folder": str(video.parent),
        "status": "done",
    }

    def copy_last_part(path: Path, metadata: dict[str, Any]) -> None:
        """The last part's file already holds its video and record: copied in atomically."""
        temp = temp_path_for(path)
        shutil.copyfile(video, temp)
        temp.replace(path)

    return save_output(outputs, "chain", request.first.prompt, request.first.seed, record, copy_last_part)
