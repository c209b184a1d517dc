"""Text to video: one request through a Wan pipeline to frames, with progress and cancel per step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.hardware import compute_dtype
from core.jobs import Job
from core.outputs import base_record
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


def t2v_record(
    job_id: str,
    request: T2VRequest,
    device: torch.device,
    *,
    memory_level: int,
    memory_plan: str,
    applied: dict[str, Any],
    time_s: float,
    peak_gb: float,
) -> dict[str, Any]:
    """The record of a finished text-to-video job; ``applied`` holds what ran of the speed options and
    step cache (keys ``speed`` and ``cache``)."""
    card = request.card
    return base_record("t2v", job_id) | {
        "model": card.id,
        "model_name": card.name,
        "request": request.to_dict(),
        "seed": request.seed,
        "width": request.width,
        "height": request.height,
        "frames": request.frames,
        "fps": card.fps,
        "flow_shift": request.resolved_flow_shift(),
        "device": str(device),
        "memory_level": memory_level,
        "memory_plan": memory_plan,
        **applied,
        "dtype": str(compute_dtype(device)).removeprefix("torch."),
        "time_s": round(time_s, 3),
        "peak_memory_gb": round(peak_gb, 3),
        "status": "done",
    }
