"""Text to video: one request through a Wan pipeline to frames, with progress and cancel per step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.jobs import Job
from core.requests import T2VRequest


def set_flow_shift(pipe: Any, shift: float) -> None:
    """Give the pipeline's flow-matching scheduler the asked shift (a new scheduler from the same config)."""
    scheduler = pipe.scheduler
    if "flow_shift" in scheduler.config and scheduler.config.flow_shift != shift:
        pipe.scheduler = type(scheduler).from_config(scheduler.config, flow_shift=shift)


def step_callback(job: Job, total: int):
    """A ``callback_on_step_end`` that reports step i/N and stops the run when the job is cancelled."""

    def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        job.report("denoising", index + 1, total)
        job.check_cancelled()
        if index + 1 == total:
            job.report("decoding video")
        return {}

    return on_step_end


def generate_t2v(pipe: Any, request: T2VRequest, job: Job) -> np.ndarray:
    """Run ``request`` (with a concrete seed) and return float frames in [0, 1] shaped (T, H, W, 3)."""
    set_flow_shift(pipe, request.resolved_flow_shift())
    generator = torch.Generator("cpu").manual_seed(request.seed)
    kwargs: dict[str, Any] = {}
    if getattr(pipe, "transformer_2", None) is not None and request.guidance_2 is not None:
        kwargs["guidance_scale_2"] = request.guidance_2
    job.report("encoding prompt")
    output = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        height=request.height,
        width=request.width,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        generator=generator,
        output_type="np",
        callback_on_step_end=step_callback(job, request.steps),
        **kwargs,
    )
    return np.asarray(output.frames[0])
