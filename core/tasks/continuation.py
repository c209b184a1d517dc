"""The continuation task: input clip -> SkyReels-V2 DF video-to-video -> clip + new frames (+ audio); a
start image instead of a clip goes through the authors' image-to-video DF pipeline (``continue_image``).

The pipeline sees only the last ``overlap_history`` frames of the clip; it extends them window by window
(``base_num_frames`` each) and decodes the conditioning frames again with the new ones, so the frames
after the first ``2 * overlap_history`` of its output are the new ones. The saved file is the converted
clip followed by them (or only them), with the clip's sound under the clip part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.audio import add_record_and_audio
from core.continuation import ContinueRequest, latent_frames
from core.device_models import Worker
from core.job_run import JobRun
from core.jobs import Job
from core.outputs import save_output
from core.pipelines import set_flow_shift
from core.preview import LatentPreview
from core.tasks.continue_image import run_from_image
from core.tasks.forcing import run_forcing
from core.tasks.registry import Task, register
from core.video_input import InputVideo, iter_resampled, last_frames, open_input
from core.video_io import METADATA_KEY, VideoWriter


def denoising_calls(pipe: Any, request: ContinueRequest) -> int:
    """How many denoising steps the pipeline will take over all windows (for progress)."""
    pipe.scheduler.set_timesteps(request.steps)
    timesteps = pipe.scheduler.timesteps
    overlap = latent_frames(request.overlap_history)
    base = latent_frames(request.base_num_frames)
    remaining = request.add_frames // 4
    total = 0
    while remaining > 0:
        window = min(remaining, base - overlap)
        matrix = pipe.generate_timestep_matrix(
            overlap + window, timesteps, overlap + window, request.ar_step, overlap, request.causal_block_size
        )[0]
        total += matrix.shape[0]
        remaining -= window
    return total


def generate_continuation(
    pipe: Any,
    request: ContinueRequest,
    video: InputVideo,
    context: np.ndarray,
    job: Job,
    preview: LatentPreview | None = None,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The new frames, float in [0, 1] (add_frames, H, W, 3), and the cache stats when a cache was on;
    ``preview`` gets the window's latents after each step (read only)."""
    set_flow_shift(pipe, request.resolved_shift(video.width, video.height))
    frames, stats = run_forcing(
        pipe,
        request,
        job,
        preview,
        denoising_calls(pipe, request),
        video=[Image.fromarray(frame) for frame in context],
        height=video.height,
        width=video.width,
        num_frames=request.overlap_history + request.add_frames,
    )
    return frames[2 * len(context) :], stats


def write_continuation(
    path: Path, video: InputVideo, new_frames: np.ndarray, metadata: dict[str, Any], with_clip: bool
) -> Path:
    """Write the converted clip, then ``new_frames``, to ``path`` atomically, then the clip's sound under
    the clip part. A failed mux keeps the silent video and notes it in the record (``metadata``'s, which
    the sidecar saves next)."""
    with VideoWriter(path, video.fps, metadata) as writer:
        if with_clip:
            for frame in iter_resampled(video):
                writer.write(frame[None])
        writer.write(new_frames)
    if with_clip and video.has_audio:
        add_record_and_audio(path, video.path, metadata[METADATA_KEY], duration=video.duration)
    return path


@register
class ContinueTask(Task):
    """SkyReels-V2 Diffusion Forcing continuation of a clip (or a start image) on one device."""

    name = "continue"
    request_type = ContinueRequest

    def parse(self, data: dict[str, Any]) -> ContinueRequest:
        """As any task's, a request with a start ``image`` needing no ``video`` field."""
        return super().parse({"video": ""} | data)

    def run(self, worker: Worker, job: Job, request: ContinueRequest) -> dict[str, Any]:
        """Read the clip, continue it, and save the clip (unless ``continuation_only``) and the new frames;
        a request with a start image runs :func:`core.tasks.continue_image.run_from_image`."""
        if request.image:
            return run_from_image(worker, job, request)
        card = request.card
        with JobRun(self.name, job, request, worker.device) as run:
            request = run.request
            job.report("reading input video")
            video = open_input(request.video, card, min_frames=request.overlap_history)
            context = last_frames(video, request.overlap_history)
            preview = LatentPreview.for_run(worker.settings, job, card)
            job.check_cancelled()
            (new_frames, cache_stats), plan, level = worker.models.run_planned(
                job,
                card,
                (video.width, video.height, request.base_num_frames),
                request.memory_level,
                lambda pipe: generate_continuation(pipe, request, video, context, job, preview),
                decode_frames=request.overlap_history + request.add_frames,
            )
        with_clip = not request.continuation_only
        record = run.record(
            card,
            input=video.describe(request.overlap_history),
            width=video.width,
            height=video.height,
            fps=video.fps,
            frames=(video.frames if with_clip else 0) + len(new_frames),
            input_frames=video.frames,
            added_frames=len(new_frames),
            audio=with_clip and video.has_audio,
            flow_shift=request.resolved_shift(video.width, video.height),
            cache=cache_stats,
            device=str(worker.device),
            memory_level=level,
            memory_plan=plan.reason,
            dtype=run.dtype,
            **run.measured(),
            status="done",
        )
        job.report("writing video")
        return save_output(
            worker.settings.outputs_dir,
            "continue",
            request.prompt,
            request.seed,
            record,
            lambda path, metadata: write_continuation(path, video, new_frames, metadata, with_clip),
        )
