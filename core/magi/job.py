"""Running a MAGI-1 job: the models for a card, text to video or a clip's continuation, chunk by chunk.

The DiT, VAE and T5 encoder are loaded once into the runner's pipeline slot (freed when another model is
asked for). Each finished chunk is kept and a playable preview of the chunks so far is rewritten and shown
through :meth:`core.jobs.Job.show_preview`, so the result grows in the UI while the job runs. A cancel (or
a failure) after the first chunk keeps ``<name>_partial.mp4`` with every chunk made.

A continuation reads the clip at the card's fps and size (``core.video_input``); its last whole chunks (as
many as a new chunk attends, at most 4) are the prefix the model continues. The saved file is the converted
clip followed by the new chunks (or only them), with the clip's sound under the clip part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.continue_job import write_continuation
from core.encoders import X264, Encoder
from core.hardware import PeakMemory, compute_dtype
from core.jobs import Job, JobCancelledError
from core.magi.caching import magi_cache_stats
from core.magi.generate import generate
from core.magi.models import MagiModels
from core.magi.request import MagiRequest, context_frames
from core.outputs import base_record, new_output_path, save_output, sidecar_path, write_json_atomic
from core.validation import ConfigError
from core.video_input import InputVideo, last_frames, open_input
from core.video_io import METADATA_KEY, VideoWriter, to_uint8_frames, write_video
from weights.registry import ModelCard
from weights.store import ensure_model

if TYPE_CHECKING:
    from core.runner import Runner

PREVIEW_DIR = ".previews"
PREVIEW_MAX_AGE_S = 3600
PREVIEW_ENCODER = Encoder(X264, {"crf": "26", "preset": "ultrafast"})
MEMORY_HINT = (
    "; MAGI-1 ran out of GPU memory: a smaller window size (1 fits ~12 GB GPUs), a KV budget or a smaller "
    "resolution needs less"
)


class ChunkPreview:
    """The chunks made so far (uint8) and, after each, a playable mp4 of them: ``<job id>-<k>.mp4`` in
    ``folder`` for chunk ``k`` (a new name each time, so the UI sees a new video). Older previews are
    deleted as new ones come; the last one stays until a later job sweeps previews older than an hour
    (the UI may still be fetching it when the job ends)."""

    def __init__(self, folder: Path, fps: int, job: Job) -> None:
        self.folder, self.fps, self.job = Path(folder), fps, job
        self.chunks: list[np.ndarray] = []
        self._sweep()

    def path(self, count: int) -> Path:
        return self.folder / f"{self.job.id}-{count}.mp4"

    def add(self, index: int, frames: torch.Tensor) -> None:
        """``on_chunk`` of :func:`core.magi.generate.generate`: keep chunk ``index`` and show the preview."""
        self.chunks.append(to_uint8_frames(frames.numpy()))
        count = len(self.chunks)
        with VideoWriter(self.path(count), self.fps, encoder=PREVIEW_ENCODER) as writer:
            for chunk in self.chunks:
                writer.write(chunk)
        self.job.show_preview(str(self.path(count)))
        self.path(count - 2).unlink(missing_ok=True)

    @property
    def frames(self) -> np.ndarray:
        return np.concatenate(self.chunks)

    def close(self) -> None:
        """Delete the previews but the last one."""
        self.path(len(self.chunks) - 1).unlink(missing_ok=True)

    def _sweep(self) -> None:
        if self.folder.is_dir():
            for old in self.folder.glob("*.mp4"):
                if time.time() - old.stat().st_mtime > PREVIEW_MAX_AGE_S:
                    old.unlink(missing_ok=True)


@dataclass(frozen=True)
class Clip:
    """A continuation's input: the converted clip and the prefix (its last whole chunks) the model sees."""

    video: InputVideo
    prefix: torch.Tensor


def open_clip(request: MagiRequest, card: ModelCard) -> Clip:
    """Check the input video and cut its prefix: as many whole chunks as a new chunk attends (at most 4)."""
    video = open_input(request.video, card)
    if request.size is not None:
        video = replace(video, width=request.size[0], height=request.size[1])
    context = context_frames(card, video.frames, video.path.name)
    prefix = torch.from_numpy(last_frames(video, context)).float() / 255.0
    return Clip(video, prefix)


def load_models(runner: Runner, job: Job, card: ModelCard) -> MagiModels:
    """The card's models from the runner's pipeline slot, fetching the weights first when needed."""
    job.report("preparing weights")
    folder = ensure_model(
        card,
        runner.settings,
        on_progress=lambda p: job.report("downloading", p.bytes_done, p.bytes_total),
        should_cancel=lambda: job.cancel_requested,
    )
    job.check_cancelled()
    job.report("loading model")
    return runner.pipelines.get(card, folder)


def magi_record(
    job: Job,
    request: MagiRequest,
    runner: Runner,
    models: MagiModels,
    clip: Clip | None,
    size: tuple[int, int],
) -> dict[str, Any]:
    """The record fields known before generation."""
    card = request.card
    record = base_record(request.task, job.id) | {
        "model": card.id,
        "model_name": card.name,
        "request": request.to_dict(),
        "seed": request.seed,
        "width": size[0],
        "height": size[1],
        "fps": card.fps,
        "chunks": request.chunks,
        "steps": request.steps,
        "guidance": request.guidance,
        "window_size": request.window_size,
        "kv_budget": request.kv_budget,
        "device": str(runner.device),
        "dtype": str(compute_dtype(runner.device)).removeprefix("torch."),
        "text_encoder_device": str(models.text.device),
    }
    if clip is not None:
        with_clip = not request.continuation_only
        record |= {
            "input": clip.video.describe(len(clip.prefix)),
            "input_frames": clip.video.frames,
            "context_frames": len(clip.prefix),
            "audio": with_clip and clip.video.has_audio,
        }
    return record


def save_video(
    runner: Runner,
    request: MagiRequest,
    clip: Clip | None,
    record: dict[str, Any],
    frames: np.ndarray,
    partial: bool,
) -> dict[str, Any]:
    """Write the new ``frames`` (after the clip, for a continuation) with ``record``; a partial result
    goes to ``<name>_partial.mp4``. Returns the record with ``output`` and ``path``."""
    fps = request.card.fps
    added = len(frames)
    with_clip = clip is not None and not request.continuation_only
    record |= {"frames": added + (clip.video.frames if with_clip else 0)}
    if clip is not None:
        record["added_frames"] = added

    def write(path: Path, metadata: dict[str, Any]) -> object:
        if clip is None:
            return write_video(path, frames, fps, metadata)
        return write_continuation(path, clip.video, frames, metadata, with_clip)

    outputs = runner.settings.outputs_dir
    if not partial:
        return save_output(outputs, request.task, request.prompt, request.seed, record, write)
    path = new_output_path(outputs, request.task, request.prompt, request.seed)
    path = path.with_name(f"{path.stem}_partial{path.suffix}")
    record["output"] = path.name
    write(path, {METADATA_KEY: record, "title": request.prompt})
    write_json_atomic(sidecar_path(path), record)
    record["path"] = str(path)
    return record


def run_magi(runner: Runner, job: Job, request: MagiRequest) -> dict[str, Any]:
    """Run ``request`` on ``runner``'s device and pipeline slot; returns the job's record."""
    request = request.with_seed()
    job.request = request
    card = request.card
    started = time.perf_counter()
    clip = None
    if request.task == "continue":
        job.report("reading input video")
        clip = open_clip(request, card)
    size = (clip.video.width, clip.video.height) if clip is not None else request.size
    hooks, policy = request.cache_parts()
    preview = ChunkPreview(runner.settings.outputs_dir / PREVIEW_DIR, card.fps, job)
    stats: dict[str, Any] = {}
    failure: Exception | None = None
    with PeakMemory(runner.device) as peak:
        models = load_models(runner, job, card)
        record = magi_record(job, request, runner, models, clip, size)
        job.report("encoding prompt")
        caption, mask = models.captions(request.prompt, request.chunks)
        try:
            generate(
                models.dit,
                models.vae,
                caption,
                mask,
                num_chunks=request.chunks,
                width=size[0],
                height=size[1],
                steps=request.steps,
                guidance=request.guidance,
                seed=request.seed,
                prefix_video=None if clip is None else clip.prefix,
                window_size=request.window_size,
                on_chunk=preview.add,
                on_step=lambda step, total: job.report("denoising", step, total),
                check_cancelled=job.check_cancelled,
                step_hooks=hooks,
                kv_policy=policy,
                run=models.run,
                stats=stats,
            )
            status = "done"
        except JobCancelledError:
            if not preview.chunks:
                raise
            status = "cancelled"
        except ConfigError:
            raise
        except Exception as exc:  # kept below: the chunks made are saved before the error goes on
            failure, status = exc, "failed"
        finally:
            preview.close()
    record.update(
        status=status,
        chunks_done=len(preview.chunks),
        generation=stats,
        cache=magi_cache_stats(hooks, policy) or None,
        time_s=round(time.perf_counter() - started, 3),
        peak_memory_gb=round(peak.peak_gb, 3),
    )
    if failure is not None:
        raise _failed(failure, runner, request, clip, record, preview) from failure
    job.report("writing video")
    return save_video(runner, request, clip, record, preview.frames, partial=status != "done")


def _failed(
    exc: Exception,
    runner: Runner,
    request: MagiRequest,
    clip: Clip | None,
    record: dict[str, Any],
    preview: ChunkPreview,
) -> Exception:
    """The error to raise for a failed run, after keeping the chunks made (and freeing an OOM'd model)."""
    hint = ""
    if isinstance(exc, torch.OutOfMemoryError):
        runner.pipelines.unload()
        hint = MEMORY_HINT
    kept = ""
    if preview.chunks:
        record["error"] = str(exc)
        saved = save_video(runner, request, clip, record, preview.frames, partial=True)
        kept = f"; kept {saved['output']} ({len(preview.chunks)} chunks)"
    return RuntimeError(f"MAGI-1 failed after {len(preview.chunks)} chunks: {exc}{hint}{kept}")
