"""Task-level multi-GPU: one worker process per GPU, each running its own Runner.

:meth:`WorkerPool.executors` gives one executor per worker for :class:`core.jobs.JobQueue`, a drop-in for the
thread executors: the queue keeps the order and the cancel of queued jobs; each executor sends its job to its
worker and streams progress back into the parent's :class:`Job`. A worker that dies fails its job (with the
exit code) and is restarted; the other workers carry on.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

from core.jobs import Executor, Job
from core.outputs import record_extras
from core.parallel.devices import gpus_for_child
from core.parallel.remote_job import follow_remote
from core.parallel.worker import ExecutorFactory, runner_executor, worker_main
from core.settings import Settings

POLL_S = 0.1


class WorkerCrashedError(RuntimeError):
    """The worker process running a job exited before finishing it."""


@dataclass(frozen=True)
class PlacedRequest:
    """A request on its way to a worker with fields its record must hold (the dispatcher's ``gpu_plan``)."""

    request: Any
    record_extras: dict[str, Any]


def placed_executor(make_executor: ExecutorFactory, settings: Settings, gpu: int | None) -> Executor:
    """The worker's executor: ``make_executor``'s, running a :class:`PlacedRequest`'s job on its request
    inside :func:`core.outputs.record_extras`, so the mp4's own record holds those fields too."""
    execute = make_executor(settings, gpu)

    def run(job: Job) -> dict[str, Any]:
        placed = job.request
        if not isinstance(placed, PlacedRequest):
            return execute(job)
        job.request = placed.request
        with record_extras(placed.record_extras):
            return execute(job)

    return run


class _Worker:
    """One worker process and its queues; :meth:`restart` replaces a dead process."""

    def __init__(self, pool: WorkerPool, gpu: int | None, partner: int | None = None) -> None:
        self.pool = pool
        self.gpu = gpu
        self.partner = partner
        self.process: Any = None
        self.sent = 0
        self.start()

    def start(self) -> None:
        context = self.pool.context
        self.inbox, self.events = context.Queue(), context.Queue()
        self.cancel_value = context.Value("q", 0)
        self.process = context.Process(
            target=worker_main,
            args=(
                self.gpu,
                self.pool.settings,
                self.inbox,
                self.events,
                self.cancel_value,
                partial(placed_executor, self.pool.make_executor),
            ),
            name=f"gpu-worker-{self.gpu}",
            daemon=True,
        )
        with gpus_for_child(self.visible_gpus):
            self.process.start()

    @property
    def visible_gpus(self) -> list[int] | None:
        """What the process sees: its GPU as ``cuda:0`` and its partner as ``cuda:1``; None for the CPU."""
        if self.gpu is None:
            return None
        return [self.gpu] if self.partner is None else [self.gpu, self.partner]

    def restart(self) -> None:
        self.stop(timeout=1.0)
        if not self.pool.closed:
            self.start()

    def execute(self, job: Job, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``job`` in the worker process (the :data:`core.jobs.Executor` for this GPU); ``extras`` are
        fields its record gets (:func:`core.outputs.record_extras`)."""
        if hasattr(job.request, "with_seed"):
            job.request = job.request.with_seed()
        self.sent += 1
        number = self.sent
        request = job.request if extras is None else PlacedRequest(job.request, extras)
        self.inbox.put((number, job.id, request))
        return follow_remote(job, number, self.events, self.cancel_value, POLL_S, self._check_alive)

    def _check_alive(self) -> None:
        if not self.process.is_alive():
            code = self.process.exitcode
            self.restart()
            raise WorkerCrashedError(f"worker for GPU {self.gpu} exited with code {code}") from None

    def stop(self, timeout: float) -> None:
        """Ask the process to finish, then terminate and kill it if it does not."""
        if self.process is None:
            return
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        for channel in (self.inbox, self.events):
            channel.close()
            channel.cancel_join_thread()


class WorkerPool:
    """One worker process per entry of ``gpus`` (a GPU index, or None for a CPU worker).

    With several GPUs each worker also sees the next one in ``gpus`` as its partner (``cuda:1``)."""

    def __init__(
        self, settings: Settings, gpus: list[int | None], make_executor: ExecutorFactory = runner_executor
    ) -> None:
        self.settings = settings
        self.make_executor = make_executor
        self.context = multiprocessing.get_context("spawn")
        self.closed = False
        self._lock = threading.Lock()
        partners = gpus[1:] + gpus[:1] if len(gpus) > 1 and None not in gpus else [None] * len(gpus)
        self.workers = [_Worker(self, gpu, partner) for gpu, partner in zip(gpus, partners, strict=True)]

    def executors(self) -> list[Executor]:
        """One executor per worker, in ``gpus`` order, for ``JobQueue(pool.executors())``."""
        return [worker.execute for worker in self.workers]

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every worker process (call after ``JobQueue.shutdown`` so no job is running)."""
        with self._lock:
            self.closed = True
            for worker in self.workers:
                worker.stop(timeout)
