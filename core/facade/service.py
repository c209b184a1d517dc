"""The facade over :class:`core.studio.Studio`: everything the UI asks of the core, in the UI's terms
(form values keyed by the tab's API parameter names in, text, rows and request dicts out)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.batch import BatchRun, mark_deleted
from core.error_text import error_text
from core.errors import job_error_message
from core.facade import details, encode, gallery, i2v, inputs, tables
from core.facade.downloads import ModelDownloads
from core.facade.fields import Field
from core.facade.form_memory import FormMemory
from core.facade.forms import form_for
from core.facade.lora_files import LoraFiles
from core.facade.text import (
    MAGI_MEMORY_NOTE,
    chunks_label,
    describe_input,
    describe_plan,
    seconds_label,
    size_preview,
)
from core.history import SORT_ORDERS, delete_result, rerun_settings
from core.jobs import Job, JobStatus
from core.lineup import FULL, Lineup, machine_lineup
from core.magi.request import is_magi_card
from core.metrics import compare_videos
from core.outputs import base_record, reserved_output_path
from core.space import for_display
from core.studio import Studio
from core.tasks import request_types
from core.validation import ConfigError
from core.video_io import METADATA_KEY, read_record
from weights.registry import get_card, load_cards

Props = dict[str, dict[str, Any]]


class Facade:
    """What the tabs need from one studio: forms, previews, jobs, models, history, compare, batch."""

    magi_memory_note = MAGI_MEMORY_NOTE
    history_orders = SORT_ORDERS

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.settings = studio.settings
        self.lineup = studio_lineup(studio)
        self.downloads = ModelDownloads(self.settings, self.lineup.mode != FULL, self.in_space)
        self.loras = LoraFiles(self.settings)
        self.memory = FormMemory(self.inputs, self.form, self.settings.outputs_dir)

    # --- the machine ----------------------------------------------------------------------------------

    @property
    def in_space(self) -> bool:
        space = getattr(self.studio, "space", None)
        return bool(space and space.is_space)

    @property
    def several_gpus(self) -> bool:
        """Whether jobs run on several GPUs (a worker per GPU): the split choices apply."""
        return getattr(self.studio, "dispatcher", None) is not None

    def lineup_notice(self) -> str:
        """What the page says about the models it opened on (no GPU, --dev), '' on a GPU that fits."""
        return self.lineup.notice()

    def system_summary(self) -> str:
        """The hardware, and where outputs go (a Space's local paths mean nothing to its visitors)."""
        space = self.studio.space
        if space.zero_gpu:
            return "Running on a Hugging Face ZeroGPU Space: each job borrows a GPU for the time it needs."
        text = f"```\n{self.studio.hardware.summary()}\n```\n{self.studio.describe_workers()}"
        return text if space.is_space else f"{text}\nOutputs: `{self.settings.outputs_dir}`"

    def worker_rows(self) -> list[list[str]]:
        return tables.worker_rows(self.studio)

    def queued_rows(self, now: float | None = None) -> list[list[str]]:
        return tables.queued_rows(self.studio, now)

    def finished_rows(self) -> list[list[str]]:
        return tables.finished_rows(self.studio)

    def interrupted_rows(self) -> list[list[str]]:
        return tables.interrupted_rows(self.studio)

    def clear_interrupted(self) -> list[list[str]]:
        if self.studio.store is not None:
            self.studio.store.clear_interrupted()
        return self.interrupted_rows()

    def save_queue(self) -> tuple[str | None, str]:
        """The waiting jobs saved as a file to download (a batch prompt list), and a message."""
        path = self.settings.outputs_dir / ".studio" / time.strftime("queue-%Y%m%d-%H%M%S.json")
        count = self.studio.save_queue(path)
        if not count:
            return None, "No job is waiting: nothing to save."
        return str(path), (
            f"Saved {count} waiting job(s). Load the file here again, or run it headless with "
            f"`python -m core.batch {path.name}`."
        )

    def load_queue(self, path: str | None) -> str:
        """Queue every job of a saved queue file."""
        if not path:
            raise ConfigError("choose a saved queue file (.json) to load")
        jobs = self.studio.load_queue(Path(path))
        if not jobs:
            return "The file holds no job."
        return f"Queued {len(jobs)} job(s): {', '.join(job.id for job in jobs)}."

    def shown(self, value: Any) -> Any:
        """``value`` as the UI may show it (a Space's server paths cut, see ``core.space.for_display``)."""
        return for_display(value, self.studio.space, self.settings.outputs_dir)

    # --- forms ----------------------------------------------------------------------------------------

    def models(self, task: str) -> list[tuple[str, str]]:
        """(name, id) of the models serving ``task`` in this app."""
        return [(c.name, c.id) for c in self.lineup.cards(task)]

    def inputs(self, task: str) -> Props:
        """The job tab ``task``'s (its API name) inputs when the app starts, on the lineup's first model."""
        cards = self.lineup.cards
        if task == "t2v":
            return inputs.t2v_inputs(cards("t2v"), self.several_gpus)
        if task == "i2v":
            return inputs.i2v_inputs(cards("i2v"), self.several_gpus, i2v.i2v_static())
        if task == "continue":
            return inputs.continue_inputs(cards("continue"))
        if task == "upscale":
            return inputs.upscale_inputs(cards("upscale"), self.several_gpus)
        first = cards("t2v") + [c for c in cards("i2v") if not c.serves("t2v")]  # a start image: i2v models
        return inputs.chain_inputs(first, cards("continue"), cards("upscale"))

    def form(self, task: str, model_id: str | None) -> Props:
        """The fields that change when the tab's model becomes ``model_id``."""
        if not model_id:
            return {}
        return {name: f.props() for name, f in form_for(task, model_id, self.several_gpus).items()}

    def frames_note(self, frames: float, model_id: str) -> Props:
        return {"frame_count": Field(info=seconds_label(frames, get_card(model_id))).props()}

    def chunks_note(self, chunks: float, model_id: str) -> Props:
        return {"chunks": Field(info=chunks_label(chunks, get_card(model_id))).props()}

    def describe_clip(self, video: str | None, model_id: str, overlap: float) -> str:
        """What the clip becomes for the continuation model, or why it cannot be used."""
        card = get_card(model_id)
        return describe_input(video, card, encode.overlap_frames(card, overlap))

    def continuation_for(self, video: str | None, current: str | None) -> str | None:
        """The continuation model to open for ``video`` (sent by "Continue this"): a tiny model for a
        tiny model's clip (a real one would need more frames than it has), else ``current``."""
        try:
            made_by = get_card(str(read_record(Path(video))["model"])) if video else None
        except (ConfigError, KeyError, OSError, ValueError, TypeError):
            return current  # not made here, or no record: keep the user's choice
        if made_by is None or not made_by.dev or (current and get_card(current).dev):
            return current
        tiny = [card.id for card in self.lineup.cards("continue") if card.dev]
        return tiny[0] if tiny else current

    def upscale_size(
        self, video: str | None, scale: Any, max_width: float | None, model: str | None, fit: str = "pad"
    ) -> str:
        return size_preview(video, scale, max_width, model, fit)

    def estimate(self, task: str, values: Mapping[str, Any]) -> str:
        """The memory plan, as text, for the worker that would run the job (``t2v`` or ``continue``)."""
        card = get_card(values["model_id"])
        if is_magi_card(card):
            return MAGI_MEMORY_NOTE
        runner = self.studio.planning_runner()
        try:
            if task == "continue":
                res = card.resolution(card.defaults.resolution)
                frames = int(values["window_frames"] or 0) or card.defaults.frames
                added = round(values["seconds_to_add"] * card.fps)
                decoded = int(values["overlap_frames"] or 0) + added  # decoded in one go at the end
                level = values["level"]
                return describe_plan(runner.models.plan(card, res.width, res.height, frames, level, decoded))
            frames = int(values["frame_count"])
            if frames > card.max_frames:
                return seconds_label(frames, card)
            label = values["resolution_label"]
            if task == "i2v":
                width, height = i2v.estimate_size(card.id, label, values.get("image_path"))
            else:
                width, height = encode.resolution_size(card, label)
            return describe_plan(runner.models.plan(card, width, height, frames, values["level"]))
        except ConfigError as exc:
            return f"⚠️ {exc}"

    def crop_preview(self, image: str | None, model_id: str, label: Any) -> tuple[Any, str]:
        """The start image as the model will see it, and a line saying what the fit did."""
        return i2v.crop_preview(image, model_id, label)

    def frame_as_image(self, video: str | None, index: int = -1) -> str:
        """Frame ``index`` (-1: the last) of a video as a picture file, for a start image."""
        return i2v.frame_as_image(video, self.settings.outputs_dir, index)

    # --- jobs -----------------------------------------------------------------------------------------

    def request(self, task: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The request dict for a job tab's values (raises ConfigError for what cannot be read)."""
        return (encode.ENCODERS | {"i2v": i2v.i2v_request})[task](values)

    def submit(self, data: dict[str, Any]) -> Job:
        """Queue a request dict (raises ConfigError with a readable message)."""
        return self.studio.submit(data)

    def job(self, job_id: str) -> Job | None:
        return self.studio.queue.get(job_id)

    def follow(self, job: Job) -> Iterator[Job]:
        return self.studio.follow(job)

    def position(self, job: Job) -> int:
        return self.studio.queue.position(job)

    def cancel(self, job_id: str | None) -> bool:
        return self.studio.cancel(job_id)

    def outcome(self, task: str, data: Mapping[str, Any], job: Job) -> tuple[dict[str, Any], str]:
        """A finished job's details (its id and the record's fields the tab shows) and status line, with
        the cache's summary; a failed job raises :class:`JobFailed`."""
        record = job.result or {}
        message = finish_message(job) + details.summary(task, record)
        shown = {"job_id": job.id} | {k: record[k] for k in details.keys(task, data) if k in record}
        return self.shown((shown, message))

    # --- history, compare, batch ----------------------------------------------------------------------

    def history_tasks(self) -> list[str]:
        return list(request_types())

    def history_models(self) -> list[str]:
        return sorted(c.id for c in load_cards().values() if self.lineup.mode != FULL or not c.dev)

    def history(self, task: str | None, model: str | None, text: str | None) -> list[list[Any]]:
        return tables.history_rows(self.settings.outputs_dir, self.studio.space, task, model, text)

    def history_gallery(
        self, task: str | None, model: str | None, text: str | None, order: str
    ) -> tuple[list[tuple[str, str]], list[str], str]:
        """Thumbnails with captions (model, prompt, size), their paths, and the count with total size."""
        return gallery.gallery(self.settings.outputs_dir, self.studio.space, (task, model, text), order)

    def result_file(self, path: str) -> str:
        """The file of a history table's path (relative to the outputs folder in a Space)."""
        return str(self.settings.outputs_dir / path)

    def rerun_settings(self, path: str, notes: list[str]) -> dict[str, Any]:
        """The request that made the result at ``path`` (``notes``: what changed; ConfigError if none)."""
        outputs = self.settings.outputs_dir
        try:
            return rerun_settings(outputs, outputs / path, notes)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def delete_result(self, path: str) -> str:
        outputs = self.settings.outputs_dir
        try:
            removed = delete_result(outputs, outputs / path)
            summaries = mark_deleted(outputs, removed[0])
        except (ValueError, OSError) as exc:
            raise ConfigError(str(exc)) from exc
        marked = f"; marked deleted in {len(summaries)} batch summary(ies)" if summaries else ""
        return "Deleted " + ", ".join(p.name for p in removed) + marked

    def compare(self, video_a: str, video_b: str) -> tuple[dict[str, list[Any]], dict[str, object], str]:
        """The plot points, the means (with notes) of B against A, and both in one synced video."""
        folder = self.settings.outputs_dir / "compare"
        try:
            title = f"{Path(video_a).stem} vs {Path(video_b).stem}"
            with reserved_output_path(folder, "compare", title) as output:
                record = base_record("compare", "") | {
                    "a": Path(video_a).name,
                    "b": Path(video_b).name,
                    "output": output.name,
                }
                metadata = {METADATA_KEY: record, "title": title}
                result = compare_videos(Path(video_a), Path(video_b), output=output, metadata=metadata)
        except (OSError, ValueError) as exc:  # its text would name server paths: error_text cuts them
            raise ConfigError(f"Cannot compare these videos: {error_text(exc)}") from exc
        together = output
        return tables.comparison_points(result), result.summary(), str(together)

    def batch(
        self, prompt_file: str, model: str | None, files: list[str] | None = None
    ) -> Iterator[tuple[list[list[Any]], str]]:
        """Run a prompt list: (the progress rows, a status line) after each change. ``files``: uploaded
        with the list; its rows name them by file name."""
        defaults = {"model": model} if model else None
        batch = BatchRun(self.studio, Path(prompt_file), defaults, [Path(f) for f in files or ()])
        try:
            for rows in batch.run():
                yield self.shown(tables.batch_rows(rows)), self.shown(tables.batch_status(batch))
        except (ValueError, OSError) as exc:  # ConfigError is a ValueError
            raise ConfigError(str(exc)) from exc

    def with_preview(self, job_id: str | None, shown: str | None) -> str | None:
        """The running job's latest preview video (MAGI-1 writes one per chunk) when it is new, else None."""
        job = self.job(job_id) if job_id else None
        preview = job.preview if job is not None else None
        return preview if preview and preview != shown else None


def studio_lineup(studio: Studio) -> Lineup:
    """The model lists for ``studio``'s machine (its GPUs, --dev; a Space runs on the hardware its owner
    chose for the real models, e.g. ZeroGPU's lent GPU)."""
    space = getattr(studio, "space", None)
    return machine_lineup(studio.settings, getattr(studio, "hardware", None), bool(space and space.is_space))


def finish_message(job: Job) -> str:
    """The status line of a finished job; a failed one raises :class:`JobFailed` with its reason."""
    if job.status == JobStatus.FAILED:
        raise JobFailed(job_error_message(job.error))
    if job.status == JobStatus.CANCELLED:
        partial = (job.result or {}).get("path")
        where = f" Partial result kept: {partial}" if partial else ""
        return f"Cancelled during {job.progress.stage}.{where}"
    record = job.result or {}
    return f"Done in {record.get('time_s', 0):.1f} s · seed {record.get('seed')} · {record.get('output', '')}"


class JobFailed(RuntimeError):
    """A job ended with an error; the message is the readable reason."""
