"""Which GPUs run a job, decided when a queue thread takes it: one free worker, or a split over the idle GPUs.

:class:`GpuDispatcher` owns a :class:`WorkerPool` (a process per GPU) and, on demand, one warm
:class:`SplitGroup`. ``executors()`` gives one executor per worker for :class:`core.jobs.JobQueue`; the
executor of worker ``i`` asks :func:`plan_parallel` (with the number of queued jobs and idle GPUs now) and
either runs the job on worker ``i`` or, for a text-to-video job alone on idle GPUs, splits it over idle
workers only (worker ``i`` among them); a worker busy with its own job keeps running it. Jobs taken while a
split runs wait for it. A split that runs out of GPU memory even one level up runs on worker ``i`` instead,
the reason in its progress and record. Only one kind holds a GPU's memory at a time: the split group is
closed before a worker runs a job again, and the split's workers that loaded a model are restarted (empty)
before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from core.jobs import Job, JobCancelledError
from core.memory.planner import plan_level_for_gpus
from core.parallel.planner import MIN_SPLIT_TOKENS, ParallelPlan, plan_parallel
from core.parallel.pool import WorkerPool
from core.parallel.split import SplitGroup, SplitOutOfMemoryError
from core.parallel.worker import ExecutorFactory, runner_executor
from core.settings import Settings
from core.tasks import task_for
from core.validation import ConfigError


@dataclass(frozen=True)
class WorkerStatus:
    """One worker for the queue view: its name and device, and the job it runs (None when idle)."""

    name: str
    device: str
    state: str
    """"idle", "running" (its own job) or "split" (part of a split job)."""
    job_id: str | None = None
    task: str | None = None
    progress: str = ""


def worker_name(gpu: int | None, index: int) -> str:
    return f"GPU {gpu}" if gpu is not None else f"CPU worker {index}"


def split_workers(index: int, idle: list[int], world_size: int) -> tuple[int, ...]:
    """The ``world_size`` idle workers a split taken by worker ``index`` runs on: it and the first others."""
    others = [i for i in idle if i != index][: world_size - 1]
    return tuple(sorted([index, *others]))


def with_device_in_progress(job: Job, where: str) -> Callable[[], None]:
    """Make every progress message of ``job`` start with ``where`` (e.g. "GPU 1 · denoising 3/30");
    returns the function that undoes it."""
    report = job.report

    def report_on(stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        report(f"{where} · {stage}", step, total, f"{where} · {detail}" if detail else "")

    job.report = report_on  # type: ignore[method-assign]
    return lambda: vars(job).pop("report", None)


class GpuDispatcher:
    """Sends each job to one free worker or splits it over the idle GPUs (see the module docstring).

    ``gpus`` are the parent's GPU indices (None for a CPU worker, as in tests); ``queued_jobs`` counts the
    jobs still waiting in the queue. ``settings.parallel`` are the split modes allowed (default cfg, cp).
    """

    def __init__(
        self,
        settings: Settings,
        gpus: list[int | None],
        queued_jobs: Callable[[], int],
        make_executor: ExecutorFactory = runner_executor,
        rank_setup: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.gpus = list(gpus)
        self.modes = settings.parallel or ("cfg", "cp")
        self.queued_jobs = queued_jobs
        self.rank_setup = rank_setup
        self.min_split_tokens = MIN_SPLIT_TOKENS
        self.pool = WorkerPool(settings, self.gpus, make_executor)
        self.split: SplitGroup | None = None
        self._cond = threading.Condition()
        self._running: dict[int, Job] = {}
        self._split_job: Job | None = None
        self._split_workers: tuple[int, ...] = ()
        self._reserved: Job | None = None
        self._loaded: set[int] = set()

    def executors(self) -> list[Callable[[Job], dict[str, Any]]]:
        """One executor per worker, for ``JobQueue(dispatcher.executors())``."""
        return [partial(self._execute, index) for index in range(len(self.gpus))]

    def status(self) -> list[WorkerStatus]:
        """Each worker with the job it runs now."""
        with self._cond:
            running, split, split_workers = dict(self._running), self._split_job, self._split_workers
        found = []
        for index, gpu in enumerate(self.gpus):
            job = split if split is not None and index in split_workers else running.get(index)
            state = "idle" if job is None else ("split" if job is split else "running")
            found.append(
                WorkerStatus(
                    worker_name(gpu, index),
                    "cpu" if gpu is None else f"cuda:{gpu}",
                    state,
                    job.id if job else None,
                    getattr(job.request, "task", None) if job else None,
                    job.progress.describe() if job else "",
                )
            )
        return found

    def _execute(self, index: int, job: Job) -> dict[str, Any]:
        plan = self._claim(index, job)
        if plan.mode == "split":
            try:
                return self._run_split(job, plan)
            except SplitOutOfMemoryError as error:
                plan = ParallelPlan("task", 1, f"the split ran {error}")
                self._split_to_one(index, job)
            finally:
                if plan.mode == "split":
                    self._release(job)
        return self._run_task(index, job, plan)

    def _run_task(self, index: int, job: Job, plan: ParallelPlan) -> dict[str, Any]:
        """Run ``job`` (its workers claimed) on worker ``index``, then release them."""
        where = worker_name(self.gpus[index], index)
        undo = with_device_in_progress(job, where)
        placement = {"mode": "task", "reason": plan.reason, "worker": where}
        partners: list[int] = []
        try:
            job.report(plan.describe())
            partners, stale = self._take_partners(index, job)
            for partner in stale:
                self.pool.workers[partner].restart()
            record = self.pool.workers[index].execute(job, {"gpu_plan": placement})
        finally:
            if partners:
                self.pool.workers[index].restart()
            undo()
            self._release(job)
        return record | {"gpu_plan": placement}

    def _take_partners(self, index: int, job: Job) -> tuple[list[int], list[int]]:
        """The other workers ``job`` holds besides ``index``, and those of them that hold a model (no longer
        marked loaded: the caller restarts them)."""
        with self._cond:
            partners = [i for i, running in self._running.items() if running is job and i != index]
            stale = [i for i in partners if i in self._loaded]
            self._loaded.difference_update(stale)
        return partners, stale

    def _split_name(self, workers: tuple[int, ...]) -> str:
        gpus = self._gpus_of(workers)
        if gpus is None:
            return f"CPU ranks 0-{len(workers) - 1}"
        return "GPUs " + "+".join(str(gpu) for gpu in gpus)

    def _claim(self, index: int, job: Job) -> ParallelPlan:
        """Wait until this job may start, decide task or split, and mark the GPUs it takes."""
        request = job.request
        choice = request.multi_gpu if task_for(request).splittable else "one"
        needs = self._workers_for(index, request)
        waited = False
        with self._cond:
            while True:
                busy = set(self._running)
                reserved = self._reserved is not None and self._reserved is not job
                if not reserved and self._split_job is None and not busy & set(needs):
                    if choice != "split" or not busy:
                        break
                    self._reserved = job  # jobs taken after this one wait until it has every GPU
                if job.cancel_requested:
                    if self._reserved is job:
                        self._reserved = None
                        self._cond.notify_all()
                    raise JobCancelledError(job.id)
                if not waited:
                    holder = " (a split job holds them)" if self._split_job else ""
                    job.report(f"waiting for the GPUs{holder}")
                    waited = True
                self._cond.wait(1.0)
            if self._reserved is job:
                self._reserved = None
            idle = [i for i in range(len(self.gpus)) if i not in busy]
            plan = self._plan(request, choice, idle, needs)
            if plan.mode == "split":
                self._split_job = job
                self._split_workers = split_workers(index, idle, plan.world_size)
            else:
                self._running.update(dict.fromkeys(needs, job))
                if self.split is not None:
                    self.split.close()
        return plan

    def _workers_for(self, index: int, request: Any) -> list[int]:
        """Worker ``index``, and the next ones when the job takes several devices (an upscale split over two
        GPUs)."""
        count = min(task_for(request).workers_needed(request), len(self.gpus))
        return [(index + offset) % len(self.gpus) for offset in range(count)]

    def _plan(self, request: Any, choice: str, idle: list[int], needs: list[int]) -> ParallelPlan:
        """Task or split for ``request`` with the workers ``idle`` free now (``needs`` among them)."""
        if len(needs) == 2:
            names = " and ".join(worker_name(self.gpus[i], i) for i in needs)
            return ParallelPlan("task", 1, f"FlashVSR's blocks split over {names} (pipeline)")
        if not task_for(request).splittable:
            return ParallelPlan("task", 1, f"{request.task} jobs run on one GPU")
        if choice == "one" or len(idle) <= 1:
            return plan_parallel(1, len(idle), request, choice=choice)
        try:
            size = (request.width, request.height, request.frames)
            level = plan_level_for_gpus(request.card, size, self._gpus_of(idle), request.memory_level)
            return plan_parallel(
                self.queued_jobs() + 1,
                len(idle),
                request,
                min_tokens=self.min_split_tokens,
                modes=self.modes,
                memory_level=level,
                choice=choice,
            )
        except (ConfigError, KeyError) as exc:
            return ParallelPlan("task", 1, f"cannot plan a split: {exc}")

    def _split_to_one(self, index: int, job: Job) -> None:
        """Hand the split ``job`` (its group closed) worker ``index`` alone; the other GPUs are free again."""
        with self._cond:
            self._split_job = None
            self._running[index] = job
            self._cond.notify_all()

    def _release(self, job: Job) -> None:
        with self._cond:
            if self._split_job is job:
                self._split_job = None
            taken = [index for index, running in self._running.items() if running is job]
            for index in taken:
                del self._running[index]
            self._loaded.update(taken[:1])
            self._cond.notify_all()

    def _gpus_of(self, workers: Iterable[int]) -> tuple[int, ...] | None:
        """The GPUs of ``workers`` (None for CPU workers)."""
        gpus = [self.gpus[i] for i in workers]
        return None if None in gpus else tuple(gpus)

    def _run_split(self, job: Job, plan: ParallelPlan) -> dict[str, Any]:
        """Restart the split's workers that hold a model, then run ``job`` on a split group over them."""
        with self._cond:
            workers = self._split_workers
            stale = sorted(self._loaded.intersection(workers))
            self._loaded.difference_update(stale)
        undo = with_device_in_progress(job, self._split_name(workers))
        try:
            job.report(plan.describe())
            for index in stale:
                self.pool.workers[index].restart()
            group = self._split_group(workers, plan.modes)
            return group.run(job, job.request, plan.modes, placement=plan.describe())
        finally:
            undo()

    def _split_group(self, workers: tuple[int, ...], modes: tuple[str, ...]) -> SplitGroup:
        """The warm split group when it runs on ``workers``' GPUs, else a new one (the old one closed)."""
        gpus = self._gpus_of(workers)
        if self.split is not None and (self.split.world_size, self.split.gpus) != (len(workers), gpus):
            self.split.close()
            self.split = None
        if self.split is None:
            self.split = SplitGroup(self.settings, len(workers), modes, gpus=gpus, rank_setup=self.rank_setup)
        return self.split

    def shutdown(self) -> None:
        """Stop the workers and the split ranks (after ``JobQueue.shutdown``)."""
        self.pool.shutdown()
        if self.split is not None:
            self.split.close()
