"""What every task does around its work: a concrete seed, the job's request, the clock, the peak memory and
the record's common fields."""

from __future__ import annotations

import time
from typing import Any

import torch

from core.hardware import PeakMemory, compute_dtype
from core.jobs import Job
from core.outputs import base_record
from weights.registry import ModelCard


class JobRun:
    """One job's run on ``device``: ``request`` gets a concrete seed and becomes the job's request; inside
    ``with`` the peak memory is measured. :meth:`record` starts the record (the fields every task's record
    has), :meth:`measured` gives the time and peak memory once the block has ended."""

    def __init__(self, task: str, job: Job, request: Any, device: torch.device) -> None:
        self.task = task
        self.job = job
        self.request = request.with_seed()
        job.request = self.request
        self.device = device
        self.started = time.perf_counter()
        self.peak = PeakMemory(device)

    def __enter__(self) -> JobRun:
        self.peak.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak.__exit__(*exc)

    @property
    def dtype(self) -> str:
        return str(compute_dtype(self.device)).removeprefix("torch.")

    def record(self, card: ModelCard, **fields: Any) -> dict[str, Any]:
        """The record's common start (app, task, job, model, request, seed), then ``fields``."""
        return (
            base_record(self.task, self.job.id)
            | {
                "model": card.id,
                "model_name": card.name,
                "request": self.request.to_dict(),
                "seed": self.request.seed,
            }
            | fields
        )

    def measured(self) -> dict[str, Any]:
        """Time since the run started and the peak memory (GB) of the ``with`` block."""
        return {
            "time_s": round(time.perf_counter() - self.started, 3),
            "peak_memory_gb": round(self.peak.peak_gb, 3),
        }
