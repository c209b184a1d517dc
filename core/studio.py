"""The studio: the app's one entry into the core — hardware, a runner per device, and the job queue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from core.hardware import Hardware, detect_hardware
from core.jobs import Executor, Job, JobQueue, JobStatus
from core.parallel.dispatch import GpuDispatcher, WorkerStatus
from core.queue_store import QUEUE_FILE, QueueStore, StoredJob, load_requests, save_requests
from core.runner import Runner
from core.settings import Settings
from core.space import SpaceInfo, detect_space, on_zero_gpu
from core.tasks import parse_request, task_for
from core.validation import ConfigError


def pick_devices(hardware: Hardware, space: SpaceInfo) -> list[torch.device]:
    """One device per selected GPU, or the CPU when there is none (ZeroGPU lends cuda:0 per job)."""
    if space.zero_gpu:
        return [torch.device("cuda", 0)]
    return [torch.device("cuda", gpu.index) for gpu in hardware.gpus] or [torch.device("cpu")]


class Studio:
    """Owns the workers (one per device) and the queue they share.

    One device: a runner in this process. Several: a :class:`GpuDispatcher` with a worker process per GPU
    that sends each job to a free worker or splits a big lone text- or image-to-video job over the idle GPUs
    (``settings.parallel``: the split modes allowed). The runners stay in this process for
    planning (the estimate of :meth:`planning_runner`) and load nothing unless they run jobs themselves.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.space = detect_space()
        self.hardware = detect_hardware(settings.gpus)
        self.devices = pick_devices(self.hardware, self.space)
        self.runners = [Runner(settings, device) for device in self.devices]
        self.dispatcher: GpuDispatcher | None = None
        self.store = QueueStore(settings.outputs_dir / QUEUE_FILE) if settings.keep_queue else None
        saved = self.store.load() if self.store is not None else []
        self.queue = JobQueue(self._executors(), store=self.store)
        self._queue_again(saved)

    def _queue_again(self, saved: list[StoredJob]) -> None:
        """Queue the jobs the app held as queued when it stopped; keep those it was running (and any that
        can no longer run, e.g. their input file is gone) as interrupted, with the reason."""
        kept = [job for job in saved if job.status == "interrupted"]
        for job in saved:
            if job.status != "queued":
                continue
            try:
                self.submit(job.request)
            except ConfigError as exc:
                kept.append(replace(job, status="interrupted", note=f"not queued again: {exc}"))
        if self.store is not None and kept:
            self.store.keep_interrupted(kept)

    def _executors(self) -> list[Executor]:
        if len(self.devices) > 1:
            gpus = [device.index for device in self.devices]
            self.dispatcher = GpuDispatcher(self.settings, gpus, self._queued_jobs)
            return self.dispatcher.executors()
        return [on_zero_gpu(runner.execute, self.space) for runner in self.runners]

    def _queued_jobs(self) -> int:
        return sum(1 for job in self.queue.jobs() if job.status == JobStatus.QUEUED)

    def describe_workers(self) -> str:
        """How jobs are spread over the devices, for the System panel."""
        names = ", ".join(str(device) for device in self.devices)
        if self.dispatcher is not None:
            return (
                f"One worker process per GPU ({names}); the queue sends each job to a free one, and splits "
                f"a big text- or image-to-video job that runs alone over the idle GPUs "
                f"({', '.join(self.dispatcher.modes)})."
            )
        return f"One worker on {names}."

    def worker_status(self) -> list[WorkerStatus]:
        """Each worker (GPU) and the job it runs now, for the queue view."""
        if self.dispatcher is not None:
            return self.dispatcher.status()
        running = [job for job in self.queue.jobs() if job.status == JobStatus.RUNNING]
        job = running[0] if running else None
        return [
            WorkerStatus(
                f"GPU {device.index}" if device.type == "cuda" else "CPU",
                str(device),
                "running" if job else "idle",
                job.id if job else None,
                getattr(job.request, "task", None) if job else None,
                job.progress.describe() if job else "",
            )
            for device in self.devices[:1]
        ]

    def queued_jobs(self) -> list[Job]:
        """Jobs waiting for a worker, oldest first."""
        return [job for job in self.queue.jobs() if job.status == JobStatus.QUEUED]

    def submit(self, data: dict[str, Any]) -> Job:
        """Validate ``data`` (raises ConfigError with a readable message) and queue it; what this machine
        cannot run is refused now, not once the job starts."""
        request = parse_request(data)
        self.check_runnable(request)
        return self.queue.submit(request)

    def check_runnable(self, request: Any) -> None:
        """Refuse (ConfigError) a request this studio's devices cannot run, e.g. a split over more GPUs."""
        task_for(request).check_devices(request, self.devices)

    def save_queue(self, path: Path) -> int:
        """Write the requests of the jobs waiting now to ``path`` (a batch prompt list); how many."""
        requests = [job.request.to_dict() for job in self.queued_jobs()]
        save_requests(path, requests)
        return len(requests)

    def load_queue(self, path: Path) -> list[Job]:
        """Queue every request of a saved queue, each checked as a single job is; ConfigError names the
        first one that cannot run (nothing is queued then)."""
        requests = []
        for number, data in enumerate(load_requests(path), start=1):
            try:
                request = parse_request(data)
                self.check_runnable(request)
            except ConfigError as exc:
                raise ConfigError(f"saved job {number}: {exc}") from exc
            requests.append(request)
        return [self.queue.submit(request) for request in requests]

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
        if self.dispatcher is not None:
            self.dispatcher.shutdown()
        for runner in self.runners:
            runner.models.unload()

    def planning_runner(self) -> Runner:
        """The runner whose device would take a job submitted now, for its memory plan: one device, its
        runner; several, the first idle worker's (the dispatcher gives a job to a free worker), else the
        first's (all busy: the job waits for whichever frees first)."""
        if self.dispatcher is None:
            return self.runners[0]
        idle = [index for index, worker in enumerate(self.dispatcher.status()) if worker.state == "idle"]
        return self.runners[idle[0] if idle else 0]
