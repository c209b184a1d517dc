"""The runner: executes one job on one device, from a validated request to an mp4 and its record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.caches import apply_cache
from core.continuation import ContinueRequest
from core.continue_job import run_continue
from core.hardware import PeakMemory, compute_dtype, detect_hardware
from core.jobs import Job
from core.memory.oom import run_with_oom_retry
from core.memory.planner import MemoryPlan, plan_memory
from core.outputs import base_record, new_output_path, sidecar_path, write_json_atomic
from core.pipelines import PipelineCache, free_memory
from core.requests import T2VRequest
from core.settings import Settings
from core.speed import apply_speed
from core.t2v import generate_t2v
from core.upscale.request import UpscaleRequest
from core.upscale.run import run_upscale, unload_upscaler
from core.video_io import METADATA_KEY, write_video
from weights.registry import ModelCard
from weights.store import ensure_model


class Runner:
    """Runs jobs on ``device``, keeping the last pipeline loaded between jobs."""

    def __init__(self, settings: Settings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.pipelines = PipelineCache(device)

    def execute(self, job: Job) -> dict[str, Any]:
        """Run ``job`` to completion and return its record (also written to the mp4 and a sidecar)."""
        request = job.request
        if isinstance(request, UpscaleRequest):
            self.pipelines.unload()
            return run_upscale(self, job, request.with_seed())
        unload_upscaler(self.device)
        if isinstance(request, ContinueRequest):
            return run_continue(self, job, request)
        if isinstance(request, T2VRequest):
            return self._run_t2v(job, request.with_seed())
        raise TypeError(f"no handler for {type(request).__name__}")

    def plan(self, card: ModelCard, width: int, height: int, frames: int, level: str = "auto") -> MemoryPlan:
        """The memory level this runner's device would use for a video, from its free memory now."""
        gpu = self.device.index if self.device.type == "cuda" else None
        hardware = detect_hardware(() if gpu is None else (gpu,))
        return plan_memory(card, width, height, frames, hardware, gpu, override=level)

    def _generate(
        self,
        card: ModelCard,
        folder: Path,
        level: int,
        request: T2VRequest,
        job: Job,
        record: dict[str, Any],
    ) -> np.ndarray:
        """Generate with the request's speed options and step cache; what ran goes into ``record``."""
        speed = request.speed_config
        pipe = self.pipelines.get(card, folder, level, variant=speed)
        record["speed"] = apply_speed(
            pipe, speed, self.device, models_dir=self.settings.models_dir, report=job.report
        )
        with apply_cache(pipe, card, request.cache_config) as session:
            frames = generate_t2v(pipe, request, job)
        record["cache"] = session.stats()
        return frames

    def _run_t2v(self, job: Job, request: T2VRequest) -> dict[str, Any]:
        card = request.card
        job.request = request
        started = time.perf_counter()
        with PeakMemory(self.device) as peak:
            job.report("preparing weights")
            folder = ensure_model(
                card,
                self.settings,
                on_progress=lambda p: job.report("downloading", p.bytes_done, p.bytes_total, p.describe()),
                should_cancel=lambda: job.cancel_requested,
            )
            job.check_cancelled()
            plan = self.plan(card, request.width, request.height, request.frames, request.memory_level)
            level = [plan.level]

            def load(new_level: int) -> Any:
                level[0] = new_level
                job.report(f"loading model (memory level {new_level})")
                return self.pipelines.get(card, folder, new_level, variant=request.speed_config)

            load(plan.level)
            applied: dict[str, Any] = {}
            job.check_cancelled()
            try:
                frames = run_with_oom_retry(
                    lambda: self._generate(card, folder, level[0], request, job, applied),
                    plan,
                    load,
                    lambda message: job.report(message),
                    release=self.pipelines.unload,
                )
            finally:
                free_memory(self.device)
        record = base_record("t2v", job.id) | {
            "model": card.id,
            "model_name": card.name,
            "request": request.to_dict(),
            "seed": request.seed,
            "width": request.width,
            "height": request.height,
            "frames": request.frames,
            "fps": card.fps,
            "flow_shift": request.resolved_flow_shift(),
            "device": str(self.device),
            "memory_level": level[0],
            "memory_plan": plan.reason,
            **applied,
            "dtype": str(compute_dtype(self.device)).removeprefix("torch."),
            "time_s": round(time.perf_counter() - started, 3),
            "peak_memory_gb": round(peak.peak_gb, 3),
            "status": "done",
        }
        job.report("writing video")
        path = new_output_path(self.settings.outputs_dir, "t2v", request.prompt, request.seed)
        record["output"] = path.name
        write_video(path, frames, card.fps, {METADATA_KEY: record, "title": request.prompt})
        write_json_atomic(sidecar_path(path), record)
        record["path"] = str(path)
        return record
