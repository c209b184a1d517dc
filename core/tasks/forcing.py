"""One call of a SkyReels-V2 Diffusion Forcing pipeline (video or image to video) with a continuation
request's sampling, progress, cancel, preview and chunk cache."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from core.chunk_cache import apply_chunk_cache
from core.continuation import ContinueRequest
from core.jobs import Job
from core.preview import LatentPreview


def run_forcing(
    pipe: Any,
    request: ContinueRequest,
    job: Job,
    preview: LatentPreview | None,
    total: int,
    **inputs: Any,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Call a SkyReels-V2 DF ``pipe`` (video or image to video) with the request's sampling and ``inputs``
    (its start, size and frames): all its frames, float in [0, 1], and the cache stats when a cache was on.
    Progress counts ``total`` denoising calls; ``preview`` gets the latents after each step."""
    done = 0

    def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        done += 1
        job.report("denoising", done, total)
        job.check_cancelled()
        if preview is not None and done < total:
            preview.on_step(done, tensors)
        if done == total:
            job.report("decoding video")
        return {}

    cache = request.cache
    session = (
        apply_chunk_cache(
            pipe, cache["threshold"], cache["warmup"], request.card.extra.get("flowcache_coefficients")
        )
        if cache
        else contextlib.nullcontext()
    )
    job.report("encoding prompt")
    devices = [pipe.device] if pipe.device.type == "cuda" else []
    with session, torch.random.fork_rng(devices=devices):
        torch.manual_seed(request.seed)  # the pipeline's added conditioning noise draws from the global RNG
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
            overlap_history=request.overlap_history,
            addnoise_condition=request.addnoise_condition,
            base_num_frames=request.base_num_frames,
            ar_step=request.ar_step,
            causal_block_size=request.causal_block_size,
            fps=request.card.fps,
            callback_on_step_end=on_step_end,
            **inputs,
        )
    frames = np.asarray(output.frames[0])
    return frames, ({"method": "flowcache", **session.stats()} if cache else None)
