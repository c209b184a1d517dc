"""The studio: the app's one entry into the core — hardware, a runner per device, and the job queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from core.hardware import Hardware, detect_hardware
from core.jobs import Executor, Job, JobQueue
from core.parallel.pool import WorkerPool
from core.parallel.split import SplitGroup
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
    """Owns the workers (one per device) and the queue they share.

    One device: a runner in this process. Several: a worker process per GPU (``WorkerPool``), or with
    ``settings.parallel`` every job split over all of them (``SplitGroup``). ``runners[0]`` stays in this
    process for planning (memory estimates) and loads nothing unless it runs jobs itself.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.space = detect_space()
        self.hardware = detect_hardware(settings.gpus)
        self.devices = pick_devices(self.hardware, self.space)
        self.runners = [Runner(settings, device) for device in self.devices]
        self.pool: WorkerPool | None = None
        self.split: SplitGroup | None = None
        self.queue = JobQueue(self._executors())

    def _executors(self) -> list[Executor]:
        gpus = [device.index for device in self.devices]
        if self.settings.parallel:
            self.split = SplitGroup(self.settings, len(gpus), self.settings.parallel, gpus=tuple(gpus))
            return [self.split.execute]
        if len(self.devices) > 1:
            self.pool = WorkerPool(self.settings, gpus)
            return self.pool.executors()
        return [on_zero_gpu(runner.execute, self.space) for runner in self.runners]

    def describe_workers(self) -> str:
        """How jobs are spread over the devices, for the System panel."""
        names = ", ".join(str(device) for device in self.devices)
        if self.split is not None:
            return f"Every job is split over {names} ({', '.join(self.settings.parallel)})."
        if self.pool is not None:
            return f"One worker process per GPU ({names}); the queue sends each job to a free one."
        return f"One worker on {names}."

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
        if self.pool is not None:
            self.pool.shutdown()
        if self.split is not None:
            self.split.close()
        for runner in self.runners:
            runner.pipelines.unload()
