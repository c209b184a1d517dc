"""Running a MAGI-1 job: the models for a card, text to video or a clip's continuation, chunk by chunk.

The DiT, VAE and T5 encoder are loaded once onto the worker's device (:mod:`core.device_models`; freed
when another model is asked for). Each finished chunk goes straight to the output file and to a playable
preview of the chunks so far, shown through :meth:`core.jobs.Job.show_preview`, so the result grows in the
UI while the job runs and no frame is kept in memory (:mod:`core.magi.stream`). A cancel (or a failure)
after the first chunk keeps ``<name>_partial.mp4`` with every chunk made.

A continuation reads the clip at the card's fps and size (``core.video_input``); its last whole chunks (as
many as a new chunk attends, at most 4) are the prefix the model continues. The output file is the
converted clip (written first) followed by the new chunks (or only them), with the clip's sound under the
clip part (added at the end). A start picture instead is a one-frame prefix (MAGI-1's image to video: the
first chunk is kept whole and starts at the picture); the output is the new chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from core.device_models import Worker
from core.image_input import image_size, prepare_image
from core.job_run import JobRun
from core.jobs import Job, JobCancelledError
from core.magi.caching import magi_cache_stats
from core.magi.generate import generate
from core.magi.models import MagiModels
from core.magi.request import MagiRequest, context_frames
from core.magi.stream import PREVIEW_DIR, ChunkPreview, StreamedVideo
from core.outputs import new_output_path, sidecar_path, write_json_atomic
from core.validation import ConfigError
from core.video_input import InputVideo, last_frames, open_input, pick_resolution
from core.video_io import to_uint8_frames
from weights.registry import ModelCard

MEMORY_HINT = (
    "; MAGI-1 ran out of GPU memory: a smaller window size, a KV budget or a smaller resolution needs less"
)


@dataclass(frozen=True)
class Clip:
    """A continuation's input: the prefix the model sees (float frames in [0, 1]), the output's size, the
    record's fields, and the converted clip (None for a start picture: nothing goes before the chunks)."""

    prefix: torch.Tensor
    size: tuple[int, int]
    fields: dict[str, Any]
    video: InputVideo | None = None


def open_clip(request: MagiRequest, card: ModelCard) -> Clip:
    """Check the input video and cut its prefix: as many whole chunks as a new chunk attends (at most 4);
    a start picture is a one-frame prefix at the card's preset nearest its shape (or the asked size)."""
    if request.image:
        preset = pick_resolution(card, *image_size(request.image))
        width, height = request.size or (preset.width, preset.height)
        picture, info, fit = prepare_image(request.image, width, height)
        prefix = torch.from_numpy(np.asarray(picture)[None]).float() / 255.0
        fields = {"input": f"image {info.name} ({info.width}x{info.height})", "input_frames": 1}
        image = info.to_dict() | {"fit": fit}
        return Clip(prefix, (width, height), fields | {"context_frames": 1, "image": image})
    video = open_input(request.video, card)
    if request.size is not None:
        video = replace(video, width=request.size[0], height=request.size[1])
    context = context_frames(card, video.frames, video.path.name)
    prefix = torch.from_numpy(last_frames(video, context)).float() / 255.0
    fields = {"input": video.describe(context), "input_frames": video.frames, "context_frames": context}
    return Clip(prefix, (video.width, video.height), fields, video)


def load_models(worker: Worker, job: Job, card: ModelCard) -> MagiModels:
    """The card's models from the worker's device, fetching the weights first when needed."""
    folder = worker.models.fetch(card, job)
    job.report("loading model")
    return worker.models.get(card, folder)


def magi_record(
    run: JobRun, worker: Worker, models: MagiModels, clip: Clip | None, size: tuple[int, int]
) -> dict[str, Any]:
    """The record fields known before generation."""
    request = run.request
    record = run.record(
        request.card,
        width=size[0],
        height=size[1],
        fps=request.card.fps,
        chunks=request.chunks,
        steps=request.steps,
        guidance=request.guidance,
        window_size=request.window_size,
        kv_budget=request.kv_budget,
        device=str(worker.device),
        dtype=run.dtype,
        text_encoder_device=str(models.text.device),
    )
    if clip is not None:
        with_clip = not request.continuation_only and clip.video is not None
        record |= clip.fields | {"audio": with_clip and clip.video.has_audio}
    return record


def open_output(worker: Worker, request: MagiRequest, clip: Clip | None) -> StreamedVideo:
    """The job's output file, streamed; a continuation's converted clip is written into it first."""
    path = new_output_path(worker.settings.outputs_dir, request.task, request.prompt, request.seed)
    with_clip = clip is not None and not request.continuation_only
    return StreamedVideo(path, request.card.fps, request.prompt, clip.video if with_clip else None)


def save_video(output: StreamedVideo, record: dict[str, Any], partial: bool) -> dict[str, Any]:
    """Finish ``output`` (``<name>_partial.mp4`` when ``partial``) with ``record`` and its sidecar JSON.
    Returns the record with ``output`` and ``path``."""
    record |= {"frames": output.frames, "output": output.final_path(partial).name}
    if "input_frames" in record:
        record["added_frames"] = output.added_frames
    path = output.finish(record, partial)
    write_json_atomic(sidecar_path(path), record)
    record["path"] = str(path)
    return record


def run_magi(worker: Worker, run: JobRun) -> dict[str, Any]:
    """Run ``run.request`` on ``worker``'s device; returns the job's record. Chunks go to the output file
    and the preview as they finish; no frame is kept in memory."""
    job, request = run.job, run.request
    card = request.card
    clip = None
    if request.task == "continue":
        job.report("reading input video")
        clip = open_clip(request, card)
    size = clip.size if clip is not None else request.size
    hooks, policy = request.cache_parts()
    stats: dict[str, Any] = {}
    failure: Exception | None = None
    with run:
        models = load_models(worker, job, card)
        record = magi_record(run, worker, models, clip, size)
        job.report("encoding prompt")
        caption, mask = models.captions(request.prompt, request.chunks)
        preview = ChunkPreview(worker.settings.outputs_dir / PREVIEW_DIR, card.fps, job)
        output = open_output(worker, request, clip)

        def on_chunk(index: int, frames: torch.Tensor) -> None:
            chunk = to_uint8_frames(frames.numpy())
            output.add(chunk)
            preview.add(chunk)

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
                on_chunk=on_chunk,
                on_step=lambda step, total: job.report("denoising", step, total),
                check_cancelled=job.check_cancelled,
                step_hooks=hooks,
                kv_policy=policy,
                run=models.run,
                stats=stats,
                keep_frames=False,
            )
            status = "done"
        except JobCancelledError:
            if not output.chunks:
                output.discard()
                raise
            status = "cancelled"
        except ConfigError:
            output.discard()
            raise
        except Exception as exc:  # kept below: the chunks made are saved before the error goes on
            failure, status = exc, "failed"
        finally:
            preview.close()
    record.update(
        status=status,
        chunks_done=output.chunks,
        generation=stats,
        cache=magi_cache_stats(hooks, policy) or None,
        **run.measured(),
    )
    if failure is not None:
        raise _failed(failure, worker, record, output) from failure
    job.report("writing video")
    return save_video(output, record, partial=status != "done")


def _failed(exc: Exception, worker: Worker, record: dict[str, Any], output: StreamedVideo) -> Exception:
    """The error to raise for a failed run, after keeping the chunks made (and freeing an OOM'd model)."""
    hint = ""
    if isinstance(exc, torch.OutOfMemoryError):
        worker.models.unload()
        hint = MEMORY_HINT
    kept = ""
    if output.chunks:
        record["error"] = str(exc)
        saved = save_video(output, record, partial=True)
        kept = f"; kept {saved['output']} ({output.chunks} chunks)"
    else:
        output.discard()
    return RuntimeError(f"MAGI-1 failed after {output.chunks} chunks: {exc}{hint}{kept}")
