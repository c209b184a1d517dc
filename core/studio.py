"""The studio: the app's one entry into the core — hardware, a runner per device, and the job queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from core.hardware import Hardware, detect_hardware
from core.jobs import Job, JobQueue
from core.requests import parse_request
from core.runner import Runner
from core.settings import Settings
from core.space import SpaceInfo, detect_space, on_zero_gpu


def pick_devices(hardware: Hardware, space: SpaceInfo) -> list[torch.device]:
    """One device per selected GPU, or the CPU when there is none (ZeroGPU lends cuda:0 per job)."""
    if space.zero_gpu:
        return [torch.device("cuda", 0)]
    return [torch.device("cuda", gpu.index) for gpu in hardware.gpus] or [torch.device("cpu")]


class Studio:
    """Owns the runners (one per device, each with its own worker) and the queue they share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.space = detect_space()
        self.hardware = detect_hardware(settings.gpus)
        self.runners = [Runner(settings, device) for device in pick_devices(self.hardware, self.space)]
        self.queue = JobQueue([on_zero_gpu(runner.execute, self.space) for runner in self.runners])

    def submit(self, data: dict[str, Any]) -> Job:
        """Validate ``data`` (raises ConfigError with a readable message) and queue it."""
        return self.queue.submit(parse_request(data))

    def follow(self, job: Job, poll_s: float = 0.5) -> Iterator[Job]:
        """Yield ``job`` each time it changes, until it has finished."""
        version = -1
        while True:
            version = job.wait_for_change(version, poll_s)
            yield job
            if job.finished:
                return

    def cancel(self, job_id: str | None) -> bool:
        return bool(job_id) and self.queue.cancel(job_id)

    def shutdown(self) -> None:
        self.queue.shutdown()
        for runner in self.runners:
            runner.pipelines.unload()
