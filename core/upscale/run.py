"""The upscale job: a validated request through FlashVSR or a Real-ESRGAN network to an mp4 with the
input's audio and a record.

Frames stream from the file (bounded read-ahead) through the model into the writer chunk by chunk, so
memory stays flat however long the video is. The writer uses NVENC when this machine can open it, else
libx264. On cancel or failure the frames written so far are kept as ``<name>_partial.mp4``, with the
input's audio cut to their length.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.audio import add_record_and_audio
from core.device_models import DeviceModels, Worker
from core.encoders import choose_encoder
from core.hardware import compute_dtype
from core.job_run import JobRun
from core.jobs import Job, JobCancelledError
from core.memory.planner import UpscalePlan, plan_upscale
from core.outputs import new_output_path, sidecar_path, write_json_atomic
from core.upscale.cancel_checks import cancel_checks
from core.upscale.compile_regions import compile_flashvsr
from core.upscale.config import PROMPT_FILE
from core.upscale.esrgan import SRNetwork, load_network
from core.upscale.esrgan_stream import ESRGANStreamer
from core.upscale.frame_reader import FrameReader, SourceInfo, probe_source
from core.upscale.loading import load_flashvsr
from core.upscale.pipeline_split import pipeline_devices, split_dit, stage_report
from core.upscale.request import UpscaleRequest
from core.upscale.sizing import ENGINE_ALIGN, OutputSize, cut_back, plan_size, resize_and_crop
from core.upscale.speed import DEFAULT_SPEED
from core.upscale.streamer import FlashVSRStreamer
from core.validation import ConfigError
from core.video_io import METADATA_KEY, VideoWriter
from weights.registry import ModelCard
from weights.store import is_offline

READ_AHEAD_FRAMES = 16
ESRGAN_CUDA_DTYPE = torch.float16
"""Real-ESRGAN runs in half precision on GPUs, as its own inference script does."""


def weights_folder(card: ModelCard, job: Job, worker: Worker) -> Path:
    """The card's folder, fetched when missing; the prompt embedding, which lives in the FlashVSR GitHub repo
    rather than the weights repo, is fetched from ``extra.prompt_url`` when missing and the app is online."""
    folder = worker.models.fetch(card, job)
    prompt = folder / PROMPT_FILE
    url = card.extra.get("prompt_url")
    if not prompt.is_file() and url and not is_offline(worker.settings):
        temp = prompt.with_name(f".{prompt.name}.part")
        urllib.request.urlretrieve(url, temp)
        os.replace(temp, prompt)
    return folder


def _flashvsr_streamer(
    request: UpscaleRequest,
    folder: Path,
    models: DeviceModels,
    size: OutputSize,
    plan: UpscalePlan,
    report: Callable[[str], None],
) -> tuple[FlashVSRStreamer, Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """The FlashVSR streamer, its per-frame resize and what the record says about it (``report`` hears
    when a first run compiles)."""
    device = models.device
    model = models.get(
        request.card,
        folder,
        variant=request.variant,
        loader=lambda card, folder, device, level: load_flashvsr(
            folder, request.variant, device, compute_dtype(device)
        ),
    )
    split_dit(model, pipeline_devices(device, request.pipeline_gpus))
    offload = plan.kv_offload
    compiled = compile_flashvsr(model, DEFAULT_SPEED, folder.parent, report)  # cache in the models folder
    streamer = FlashVSRStreamer(model, offload_kv_cache=offload, speed=DEFAULT_SPEED)
    info = {
        "variant": request.variant,
        "kv_cache_offloaded": offload,
        "dtype": _dtype_name(model.dtype),
        "noise_draw": streamer.noise_draw,
        "pipeline": stage_report(model.dit),
        "speed": DEFAULT_SPEED.record() | {"compile": compiled},
    }
    return streamer, partial(resize_and_crop, size=size), info


def _esrgan_streamer(
    request: UpscaleRequest, folder: Path, models: DeviceModels, size: OutputSize, plan: UpscalePlan
) -> tuple[ESRGANStreamer, Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """The Real-ESRGAN streamer, its per-frame narrowing and what the record says about it."""
    dtype = ESRGAN_CUDA_DTYPE if models.device.type == "cuda" else torch.float32

    def load(card: ModelCard, folder: Path, device: torch.device, level: int) -> SRNetwork:
        return load_network(folder / card.extra["file"]).to(device, dtype)

    network: SRNetwork = models.get(request.card, folder, variant="esrgan", loader=load)
    streamer = ESRGANStreamer(network, size)
    info = {
        "arch": network.arch,
        "native_scale": network.scale,
        "loader": network.loader,
        "tile": streamer.tile,
        "dtype": _dtype_name(dtype),
    }
    return streamer, streamer.narrow, info


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def run_upscale(worker: Worker, run: JobRun) -> dict[str, Any]:
    """Run ``run.request`` on ``worker``'s device; returns the record, also in the mp4."""
    job, request = run.job, run.request
    card = request.card
    device = worker.device
    source = probe_source(Path(request.video))
    align = ENGINE_ALIGN[request.engine]
    size = plan_size(source.width, source.height, request.scale, request.max_input_width, align, request.fit)
    encoder = choose_encoder(request.quality, device.index if device.type == "cuda" else None)
    record = run.record(
        card,
        engine=request.engine,
        scale=request.scale,
        input=Path(request.video).name,
        input_width=source.width,
        input_height=source.height,
        width=size.width,
        height=size.height,
        size_note=size.describe(),
        frames=source.frames,
        fps=source.fps,
        encoder=encoder.describe(),
        device=str(device),
    )
    plan = plan_upscale(card, size.width, size.height, device)
    if not plan.fits:  # refused before any weight is read or loaded
        raise ConfigError(plan.reason)
    record["memory_plan"] = plan.reason
    with run:
        folder = weights_folder(card, job, worker)
        job.report("loading model")
        make_streamer = (
            _esrgan_streamer if request.engine == "esrgan" else partial(_flashvsr_streamer, report=job.report)
        )
        streamer, transform, info = make_streamer(request, folder, worker.models, size, plan)
        record |= info
        job.check_cancelled()
        stage = f"upscaling to {size.width}x{size.height}"
        job.report(stage)
        path = new_output_path(worker.settings.outputs_dir, "upscale", Path(request.video).stem, request.seed)
        metadata = {
            "title": f"{Path(request.video).name} x{request.scale}",
            METADATA_KEY: record
            | {"status": "interrupted", "output": path.name, "source_frames": source.frames},
        }  # what a crash leaves says what it was (``core.stale_outputs``); the finished file gets the final
        writer = VideoWriter(path, source.fps, metadata, encoder=encoder, timed=True, fragmented=True)
        try:
            checks = cancel_checks(streamer.model, job) if request.engine == "flashvsr" else nullcontext()
            with FrameReader(Path(request.video), transform, READ_AHEAD_FRAMES) as reader, checks:
                chunks = streamer.run(
                    reader,
                    source.frames,
                    request.seed,
                    on_chunk=lambda done, total: job.report(stage, done, total),
                )
                for frames in chunks:
                    times = reader.take_times(len(frames), source.fps)
                    writer.write(cut_back(np.asarray(frames), size), times)
                    job.check_cancelled()
        except JobCancelledError:
            return _keep_partial(writer, source, request, record | {"status": "cancelled"}, run)
        except Exception as exc:
            failed = record | {"status": "failed", "error": str(exc)}
            kept = _keep_partial(writer, source, request, failed, run)
            note = f"; kept {Path(kept['path']).name}" if kept.get("path") else ""
            raise RuntimeError(f"upscaling failed after {writer.frames_written} frames: {exc}{note}") from exc
        except BaseException:  # interrupted: nothing to keep, and the name's reservation goes
            writer.discard()
            raise
        finally:
            worker.models.after_job()
    job.report("writing video")
    record |= {
        "frames_written": writer.frames_written,
        **run.measured(),
        "status": "done",
        "output": path.name,
        "audio": source.has_audio,
    }
    writer.commit()
    add_record_and_audio(path, Path(request.video), record)
    write_json_atomic(sidecar_path(path), record)
    record["path"] = str(path)
    return record


def _keep_partial(
    writer: VideoWriter, source: SourceInfo, request: UpscaleRequest, record: dict[str, Any], run: JobRun
) -> dict[str, Any]:
    """Close what was written as ``<name>_partial.mp4`` with the input's audio cut to its length, the
    record embedded and a sidecar; the record says where, with the frames it holds (``frames``; the
    input's count is ``source_frames``) and ``partial: true``."""
    record |= {
        "frames": writer.frames_written,
        "source_frames": source.frames,
        "frames_written": writer.frames_written,
        "time_s": run.measured()["time_s"],
    }
    kept = writer.keep_partial()
    if kept is None:
        return record
    record |= {"output": kept.name, "audio": source.has_audio, "partial": True}
    add_record_and_audio(kept, Path(request.video), record, duration=writer.duration)
    write_json_atomic(sidecar_path(kept), record)
    record["path"] = str(kept)
    return record
