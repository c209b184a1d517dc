"""The runner: executes one job on one device, from a validated request to an mp4 and its record."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from core.caches import apply_cache
from core.chain import ChainRequest, run_chain
from core.continuation import ContinueRequest
from core.continue_job import run_continue
from core.hardware import PeakMemory, detect_hardware
from core.jobs import Job
from core.magi.job import run_magi
from core.magi.models import load_magi_models
from core.magi.request import MagiRequest, is_magi_card
from core.memory.oom import run_with_oom_retry
from core.memory.planner import MemoryPlan, plan_memory
from core.model_store import ensure_model
from core.outputs import save_output
from core.pipelines import PipelineCache, free_memory, load_diffusers_pipeline
from core.requests import T2VRequest
from core.settings import Settings
from core.speed import apply_speed
from core.t2v import generate_t2v, t2v_record
from core.upscale.request import UpscaleRequest
from core.upscale.run import run_upscale, unload_upscaler
from core.video_io import write_video
from weights.registry import ModelCard

T = TypeVar("T")


class Runner:
    """Runs jobs on ``device``, keeping the last pipeline loaded between jobs."""

    def __init__(self, settings: Settings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.pipelines = PipelineCache(device, self.load_pipeline)

    def load_pipeline(self, card: ModelCard, folder: Path, device: torch.device, level: int = 0) -> Any:
        """The card's models: MAGI-1's DiT, VAE and T5 for a MAGI-1 card, else a diffusers pipeline."""
        if is_magi_card(card):
            return load_magi_models(card, folder, device, self.settings)
        return load_diffusers_pipeline(card, folder, device, level, models_dir=self.settings.models_dir)

    def execute(self, job: Job) -> dict[str, Any]:
        """Run ``job`` to completion and return its record (also written to the mp4 and a sidecar).

        The runner's GPU becomes this thread's current device first, so kernels and allocations that use the
        current device (not ``self.device``) land on it too."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        request = job.request
        if isinstance(request, ChainRequest):
            return run_chain(self, job, request.with_seed())
        if isinstance(request, UpscaleRequest):
            self.pipelines.unload()
            return run_upscale(self, job, request.with_seed())
        unload_upscaler(self.device)
        if isinstance(request, MagiRequest):
            return run_magi(self, job, request)
        if isinstance(request, ContinueRequest):
            return run_continue(self, job, request)
        if isinstance(request, T2VRequest):
            return self._run_t2v(job, request.with_seed())
        raise TypeError(f"no handler for {type(request).__name__}")

    def plan(
        self,
        card: ModelCard,
        width: int,
        height: int,
        frames: int,
        level: str = "auto",
        decode_frames: int | None = None,
    ) -> MemoryPlan:
        """The memory level this runner's device would use for a video, from its free memory now
        (``decode_frames``: see :func:`core.memory.estimate.estimate_memory`)."""
        gpu = self.device.index if self.device.type == "cuda" else None
        hardware = detect_hardware(() if gpu is None else (gpu,))
        return plan_memory(
            card, width, height, frames, hardware, gpu, override=level, decode_frames=decode_frames
        )

    def run_planned(
        self,
        job: Job,
        card: ModelCard,
        size: tuple[int, int, int],
        memory_level: str,
        generate: Callable[[Any], T],
        variant: Hashable = None,
        decode_frames: int | None = None,
    ) -> tuple[T, MemoryPlan, int]:
        """Fetch ``card``'s weights, plan memory for ``size`` (width, height, frames), load the pipeline and
        return ``generate(pipe)`` with the plan and the memory level it ran at: an out-of-memory error
        reloads at the next level and tries again (``core.memory.oom``)."""
        job.report("preparing weights")
        folder = ensure_model(
            card,
            self.settings,
            on_progress=lambda p: job.report("downloading", p.bytes_done, p.bytes_total, p.describe()),
            should_cancel=lambda: job.cancel_requested,
        )
        job.check_cancelled()
        plan = self.plan(card, *size, memory_level, decode_frames)
        level = [plan.level]

        def load(new_level: int) -> Any:
            level[0] = new_level
            job.report(f"loading model (memory level {new_level})")
            return self.pipelines.get(card, folder, new_level, variant=variant)

        load(plan.level)
        job.check_cancelled()
        try:
            result = run_with_oom_retry(
                lambda: generate(self.pipelines.get(card, folder, level[0], variant=variant)),
                plan,
                load,
                lambda message: job.report(message),
                release=self.pipelines.unload,
            )
        finally:
            free_memory(self.device)
        return result, plan, level[0]

    def _generate(self, pipe: Any, request: T2VRequest, job: Job, record: dict[str, Any]) -> np.ndarray:
        """Generate with the request's speed options and step cache; what ran goes into ``record``."""
        record["speed"] = apply_speed(
            pipe, request.speed_config, self.device, models_dir=self.settings.models_dir, report=job.report
        )
        with apply_cache(pipe, request.card, request.cache_config) as session:
            frames = generate_t2v(pipe, request, job)
        record["cache"] = session.stats()
        return frames

    def _run_t2v(self, job: Job, request: T2VRequest) -> dict[str, Any]:
        job.request = request
        started = time.perf_counter()
        applied: dict[str, Any] = {}
        with PeakMemory(self.device) as peak:
            frames, plan, level = self.run_planned(
                job,
                request.card,
                (request.width, request.height, request.frames),
                request.memory_level,
                lambda pipe: self._generate(pipe, request, job, applied),
                variant=request.speed_config,
            )
        record = t2v_record(
            job.id,
            request,
            self.device,
            memory_level=level,
            memory_plan=plan.reason,
            applied=applied,
            time_s=time.perf_counter() - started,
            peak_gb=peak.peak_gb,
        )
        job.report("writing video")
        return save_output(
            self.settings.outputs_dir,
            "t2v",
            request.prompt,
            request.seed,
            record,
            lambda path, metadata: write_video(path, frames, request.card.fps, metadata),
        )
