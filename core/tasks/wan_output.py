"""A Wan-family job's video: its latents decoded (``core.speed.vae_decode``) straight into the mp4, which
a writer thread encodes while the next latent frames decode; a cancel during the decode keeps the frames
made as ``<name>_partial.mp4``. Also the job's per-stage clock (text, denoise, decode, write)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.audio import add_record_and_audio
from core.background_writer import BackgroundWriter
from core.cancel import JobCancelledError
from core.jobs import Job
from core.outputs import new_output_path, save_output, sidecar_path, write_json_atomic
from core.parallel.job_patch import patched
from core.speed.config import SpeedConfig
from core.speed.vae_decode import DecodeSetup, decode_setup, decode_stream
from core.video_io import VideoWriter, write_video

DECODE_STAGE = "decoding video"
STAGES = ("text", "denoise", "decode", "write")
"""The keys of a record's ``stages`` (seconds): the prompt's encoding, the denoising (with the image
encoding of image to video), the VAE decode until its last frame reached the host, and the writing left
after it (the encoder finishing the queued frames and closing the file; embedding the record, a packet
copy, is not counted)."""


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op off CUDA), so a stage's clock covers its GPU time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def stage_clock(pipe: Any, stages: dict[str, float], device: torch.device) -> Iterator[None]:
    """Time the pipeline call of the block into ``stages``: ``text`` (its ``encode_prompt`` calls) and
    ``denoise`` (the rest of the call)."""
    encode = pipe.encode_prompt
    text = [0.0]

    def timed_encode(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = encode(*args, **kwargs)
        synchronize(device)
        text[0] += time.perf_counter() - started
        return result

    started = time.perf_counter()
    with patched(pipe, "encode_prompt", timed_encode):
        yield
        synchronize(device)
    stages["text"] = round(text[0], 3)
    stages["denoise"] = round(time.perf_counter() - started - text[0], 3)


@dataclass(frozen=True)
class DecodedVideo:
    """The decoded job's file (complete, its record still to add) and how the decode ran."""

    path: Path
    status: str
    frames: int
    setup: DecodeSetup
    writer_busy_s: float

    def record(self) -> dict[str, Any]:
        """The record's ``decode`` field: what ran and the encoder thread's busy seconds."""
        return self.setup.to_record() | {"overlap": True, "writer_busy_s": round(self.writer_busy_s, 3)}


def decode_to_video(
    job: Job,
    outputs_dir: Path,
    request: Any,
    vae: Any,
    latents: torch.Tensor,
    config: SpeedConfig,
    stages: dict[str, float],
) -> DecodedVideo:
    """Decode ``latents`` into a new output video of ``request`` (task, prompt, seed, card fps), frames
    encoded as they come; ``stages`` gets ``decode`` and ``write``. A cancel keeps the frames made as
    ``<name>_partial.mp4`` (status ``cancelled``), or raises when none were; another error drops the file."""
    device = next(vae.parameters()).device
    setup = decode_setup(config, vae, latents, device)
    path = new_output_path(outputs_dir, request.task, request.prompt, request.seed)
    video = VideoWriter(path, request.card.fps, {"title": request.prompt})
    writer = BackgroundWriter(video.write)
    status, started = "done", time.perf_counter()
    total, done = 1 + vae.config.scale_factor_temporal * (latents.shape[2] - 1), 0
    job.report(DECODE_STAGE, 0, total)
    try:
        try:
            for frames in decode_stream(vae, latents, setup):
                writer.put(frames.wait)
                done += frames.count
                job.report(DECODE_STAGE, done, total)
                job.check_cancelled()
            synchronize(device)
        except JobCancelledError:
            status = "cancelled"
        decoded = time.perf_counter()
        writer.close()
        kept = video.commit() if status == "done" else video.keep_partial()
    except BaseException:
        writer.close_quietly()
        video.discard()
        raise
    if kept is None:
        raise JobCancelledError(job.id)
    stages["decode"] = round(decoded - started, 3)
    stages["write"] = round(time.perf_counter() - decoded, 3)
    return DecodedVideo(kept, status, video.frames_written, setup, writer.busy_s)


def save_decoded(decoded: DecodedVideo, record: dict[str, Any], title: str) -> dict[str, Any]:
    """Embed ``record`` in the decoded video (a packet copy) and write its sidecar; returns ``record``
    with ``output`` and ``path`` (and, for a partial video, the frames it holds and ``partial``)."""
    record["output"] = decoded.path.name
    if decoded.status != "done":
        record |= {"frames": decoded.frames, "partial": True}
    add_record_and_audio(decoded.path, decoded.path, record, None, {"title": title})
    write_json_atomic(sidecar_path(decoded.path), record)
    record["path"] = str(decoded.path)
    return record


def save_frames(outputs_dir: Path, request: Any, record: dict[str, Any], frames: np.ndarray) -> dict:
    """Write ``frames`` (already decoded) as a new output video of ``request`` (task, prompt, seed, card
    fps) with ``record`` embedded, then its sidecar (a split's rank 0, a continuation from an image)."""
    return save_output(
        outputs_dir,
        request.task,
        request.prompt,
        request.seed,
        record,
        lambda path, metadata: write_video(path, frames, request.card.fps, metadata),
    )
