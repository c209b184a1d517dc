"""One request over several GPUs: a group of rank processes the app starts itself, kept warm between jobs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch.multiprocessing as multiprocessing

from core.jobs import Job
from core.memory.levels import LEVELS
from core.memory.oom import step_up
from core.memory.planner import plan_level_for_gpus
from core.model_store import ensure_model
from core.parallel.config import ParallelConfig
from core.parallel.devices import gpus_for_child
from core.parallel.distributed import free_port
from core.parallel.geometry import geometry_for, split_problems
from core.parallel.remote_job import follow_remote
from core.parallel.split_rank import SplitTask, rank_main
from core.settings import Settings
from core.tasks.t2v import T2VRequest
from core.validation import ConfigError

POLL_S = 0.2


class SplitOutOfMemoryError(RuntimeError):
    """A split ran out of GPU memory and the retry one level up could not run or ran out again."""


class _RankOutOfMemory(Exception):
    """A rank of this run reported an out-of-memory error (the group is closed already)."""


def resolve_config(
    request: T2VRequest, world_size: int, modes: tuple[str, ...], memory_level: int = 0
) -> ParallelConfig:
    """The validated split of ``request``; ConfigError says why it cannot be split that way."""
    geometry = geometry_for(request.card)
    config = ParallelConfig.from_modes(world_size, modes, heads=geometry.heads)
    problems = split_problems(request, config, geometry, memory_level)
    if problems:
        raise ConfigError(f"cannot split over {config.describe()}: " + "; ".join(problems))
    return config


class SplitGroup:
    """``world_size`` rank processes (``torch.multiprocessing`` spawn, NCCL on GPUs, gloo on the CPU).

    Started on first use and kept with their pipeline loaded between :meth:`run` calls. A rank that fails or
    dies closes the group (the next job starts a fresh one); one that runs out of GPU memory makes :meth:`run`
    retry once on a fresh group one memory level up. ``rank_setup`` is a picklable function every rank calls
    after joining the group.
    """

    def __init__(
        self,
        settings: Settings,
        world_size: int,
        modes: tuple[str, ...] = ("cfg", "cp"),
        gpus: tuple[int, ...] | None = None,
        rank_setup: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.world_size = world_size
        self.modes = modes
        self.gpus = gpus
        self.rank_setup = rank_setup
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[Any] = []
        self._inboxes: list[Any] = []
        self._events: Any = None
        self._cancel: Any = None
        self._oom: Any = None
        self._number = 0

    def __enter__(self) -> SplitGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def start(self) -> None:
        """Spawn the ranks unless they are running."""
        if self._processes:
            return
        port = free_port()
        self._events = self._context.Queue()
        self._cancel = self._context.Value("q", 0)
        self._oom = self._context.Value("q", 0)
        self._inboxes = [self._context.Queue() for _ in range(self.world_size)]
        for rank, inbox in enumerate(self._inboxes):
            process = self._context.Process(
                target=rank_main,
                args=(
                    rank,
                    self.world_size,
                    port,
                    self.settings,
                    inbox,
                    self._events,
                    self._cancel,
                    self.rank_setup,
                    self._oom,
                ),
                name=f"split-rank-{rank}",
                daemon=True,
            )
            with gpus_for_child(self.gpus):
                process.start()
            self._processes.append(process)

    def run(
        self,
        job: Job,
        request: T2VRequest,
        modes: tuple[str, ...],
        *,
        memory_level: int | None = None,
        placement: str = "",
    ) -> dict[str, Any]:
        """Run ``request`` split as ``modes``, streaming progress into ``job``; honours ``job.cancel()``.

        ``memory_level`` is the level every rank loads at (default:
        :func:`core.memory.planner.plan_level_for_gpus`);
        ``placement`` is the planner's reason, kept in the record's ``gpu_plan``. When a rank runs out of GPU
        memory, every rank is restarted one level up and the job runs once more (as the single-GPU runner's
        ``run_with_oom_retry``; the progress and ``gpu_plan`` say so); :class:`SplitOutOfMemoryError` when
        that level does not fit the split or runs out too."""
        request = request.with_seed()
        if memory_level is None:
            size = (request.width, request.height, request.frames)
            memory_level = plan_level_for_gpus(request.card, size, self.gpus, request.memory_level)
        config = resolve_config(request, self.world_size, modes, memory_level)
        job.request = request
        job.report("preparing weights")
        ensure_model(
            request.card,
            self.settings,
            on_progress=lambda p: job.report("downloading", p.bytes_done, p.bytes_total, p.describe()),
            should_cancel=lambda: job.cancel_requested,
        )
        job.check_cancelled()
        placement = placement or "split asked for"
        try:
            return self._run_once(job, config, memory_level, placement)
        except _RankOutOfMemory as error:
            failure = f"out of GPU memory at level {memory_level} ({LEVELS[memory_level].label}) on {error}"
        level = step_up(memory_level)
        if level is None:
            raise SplitOutOfMemoryError(f"{failure}; no higher memory level") from None
        try:
            config = resolve_config(request, self.world_size, modes, level)
        except ConfigError as exc:
            raise SplitOutOfMemoryError(f"{failure}; level {level} does not fit this split: {exc}") from None
        job.report(f"Split {failure}; retrying it once at level {level} ({LEVELS[level].label})")
        try:
            return self._run_once(job, config, level, f"{placement}; {failure}, retried at level {level}")
        except _RankOutOfMemory as error:
            raise SplitOutOfMemoryError(f"{failure}, and again at level {level} on {error}") from None

    def _run_once(self, job: Job, config: ParallelConfig, level: int, placement: str) -> dict[str, Any]:
        """One run of ``job.request`` on every rank; :class:`_RankOutOfMemory` (the group closed) when a rank
        ran out of GPU memory."""
        self.start()
        self._number += 1
        number = self._number
        task = SplitTask(number, job.id, job.request, config, level, placement)
        for inbox in self._inboxes:
            inbox.put(task)
        close = partial(self.close, timeout=2.0)
        try:
            return follow_remote(job, number, self._events, self._cancel, POLL_S, self._check_ranks, close)
        except RuntimeError as exc:
            if self._oom.value != number:
                raise
            raise _RankOutOfMemory(str(exc)) from exc

    def _check_ranks(self) -> None:
        dead = [p for p in self._processes if not p.is_alive()]
        if dead:
            codes = ", ".join(f"{p.name} exit code {p.exitcode}" for p in dead)
            self.close(timeout=2.0)
            raise RuntimeError(f"split group lost a rank ({codes})") from None

    def close(self, timeout: float = 20.0) -> None:
        """Stop every rank: a clean exit when idle, else terminate, then kill."""
        for inbox in self._inboxes:
            inbox.put(None)
        for process in self._processes:
            process.join(timeout)
        for process in self._processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        self._processes, self._inboxes = [], []


def run_split(
    request: T2VRequest, settings: Settings, world_size: int, modes: tuple[str, ...]
) -> dict[str, Any]:
    """Generate ``request`` over ``world_size`` ranks as ``modes`` (e.g. ``("cfg", "cp")``) and return the
    record; rank 0 writes the same mp4 and sidecar as :meth:`core.runner.Runner.execute`."""
    resolve_config(request, world_size, modes)
    with SplitGroup(settings, world_size, modes) as group:
        return group.run(Job(request), request, modes)
