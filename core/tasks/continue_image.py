"""A continuation from a still picture: SkyReels-V2 DF's image-to-video pipeline (the authors' DF I2V:
the picture is the first latent frame, kept clean, and the model writes the frames after it).

The model's loaded video-to-video pipeline lends its modules to diffusers'
``SkyReelsV2DiffusionForcingImageToVideoPipeline`` (same weights, same memory plan, nothing loaded
again). The picture is fitted to the model's preset nearest its shape (:mod:`core.image_input`); the
saved video is the picture's frame followed by ``add_frames`` new ones (only the new ones with
``continuation_only``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from diffusers import SkyReelsV2DiffusionForcingImageToVideoPipeline
from PIL import Image

from core.continuation import ContinueRequest, latent_frames
from core.device_models import Worker
from core.image_input import image_size, prepare_image
from core.job_run import JobRun
from core.jobs import Job
from core.pipelines import set_flow_shift
from core.preview import LatentPreview
from core.tasks.forcing import run_forcing
from core.tasks.wan_output import save_frames
from core.video_input import pick_resolution


def image_pipeline(pipe: Any) -> Any:
    """The image-to-video DF pipeline over ``pipe``'s modules (shared, not copied)."""
    image_pipe = SkyReelsV2DiffusionForcingImageToVideoPipeline(**pipe.components)
    image_pipe.set_progress_bar_config(disable=True)
    return image_pipe


def image_denoising_calls(pipe: Any, request: ContinueRequest) -> int:
    """How many denoising steps the image-to-video pipeline takes over all its windows (for progress):
    the first window starts from the picture's latent frame, later ones from the overlap."""
    pipe.scheduler.set_timesteps(request.steps)
    timesteps = pipe.scheduler.timesteps
    total_latents = latent_frames(1 + request.add_frames)
    base = latent_frames(request.base_num_frames)
    overlap = latent_frames(request.overlap_history)
    windows = [(min(total_latents, base), 1)]
    if total_latents > base:
        done = base
        while done < total_latents:
            windows.append((min(total_latents - done + overlap, base), overlap))
            done += base - overlap
    window_base = base if total_latents > base else total_latents
    calls = 0
    for frames, prefix in windows:
        matrix = pipe.generate_timestep_matrix(
            frames, timesteps, window_base, request.ar_step, prefix, request.causal_block_size
        )[0]
        calls += matrix.shape[0]
    return calls


def generate_from_image(
    pipe: Any,
    request: ContinueRequest,
    picture: Image.Image,
    job: Job,
    preview: LatentPreview | None = None,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The picture's frame and the ``add_frames`` after it, float in [0, 1], and the cache stats."""
    image_pipe = image_pipeline(pipe)
    set_flow_shift(image_pipe, request.resolved_shift(picture.width, picture.height))
    return run_forcing(
        image_pipe,
        request,
        job,
        preview,
        image_denoising_calls(image_pipe, request),
        image=picture,
        height=picture.height,
        width=picture.width,
        num_frames=1 + request.add_frames,
    )


def run_from_image(worker: Worker, job: Job, request: ContinueRequest) -> dict[str, Any]:
    """Read the picture, make the video that starts at it, save it with its record."""
    card = request.card
    with JobRun(request.task, job, request, worker.device) as run:
        request = run.request
        job.report("reading image")
        preset = pick_resolution(card, *image_size(request.image))
        picture, info, fit = prepare_image(request.image, preset.width, preset.height)
        preview = LatentPreview.for_run(worker.settings, job, card)
        job.check_cancelled()
        (frames, cache_stats), plan, level = worker.models.run_planned(
            job,
            card,
            (preset.width, preset.height, request.base_num_frames),
            request.memory_level,
            lambda pipe: generate_from_image(pipe, request, picture, job, preview),
            decode_frames=1 + request.add_frames,
        )
    if request.continuation_only:
        frames = frames[1:]
    record = run.record(
        card,
        input=f"image {info.name} ({info.width}x{info.height})",
        image=info.to_dict() | {"fit": fit},
        width=preset.width,
        height=preset.height,
        fps=card.fps,
        frames=len(frames),
        input_frames=1,
        added_frames=request.add_frames,
        audio=False,
        flow_shift=request.resolved_shift(preset.width, preset.height),
        cache=cache_stats,
        device=str(worker.device),
        memory_level=level,
        memory_plan=plan.reason,
        dtype=run.dtype,
        **run.measured(),
        status="done",
    )
    job.report("writing video")
    return save_frames(worker.settings.outputs_dir, request, record, frames)
