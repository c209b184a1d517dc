"""Task level or split: one job per GPU while work is queued, one job over idle GPUs when it runs alone."""

from __future__ import annotations

from dataclasses import dataclass

from core.parallel.config import ParallelConfig
from core.parallel.geometry import ModelGeometry, geometry_for, split_problems, token_count
from core.requests import T2VRequest

MIN_SPLIT_TOKENS = 4096


@dataclass(frozen=True)
class ParallelPlan:
    """``mode`` "task" runs the job on one GPU; "split" runs it over ``world_size`` GPUs as ``config``."""

    mode: str
    world_size: int
    reason: str
    config: ParallelConfig | None = None

    @property
    def modes(self) -> tuple[str, ...]:
        """The ``--parallel`` modes that give ``config`` (for :func:`core.parallel.split.run_split`)."""
        if self.config is None:
            return ()
        pairs = (("cfg", self.config.cfg), ("ulysses", self.config.ulysses), ("ring", self.config.ring))
        return tuple(name for name, degree in pairs if degree > 1)


def candidate_configs(world_size: int, request: T2VRequest, geometry: ModelGeometry) -> list[ParallelConfig]:
    """Ways to use ``world_size`` ranks, best first: CFG halves, then Ulysses, then ring inside them."""
    configs = []
    cfg_choices = (2, 1) if request.guidance > 1.0 and world_size % 2 == 0 else (1,)
    for cfg in cfg_choices:
        context = world_size // cfg
        if context == 1:
            configs.append(ParallelConfig(world_size, cfg=cfg))
        else:
            configs.append(ParallelConfig(world_size, cfg=cfg, ulysses=context))
            configs.append(ParallelConfig(world_size, cfg=cfg, ring=context))
    return configs


def plan_parallel(
    n_jobs_queued: int,
    idle_gpus: int,
    request: T2VRequest,
    *,
    geometry: ModelGeometry | None = None,
    min_tokens: int = MIN_SPLIT_TOKENS,
) -> ParallelPlan:
    """Plan ``request`` given ``n_jobs_queued`` jobs waiting (itself included) and ``idle_gpus`` free GPUs."""
    geometry = geometry or geometry_for(request.card)
    if idle_gpus <= 1:
        return ParallelPlan("task", 1, f"{max(idle_gpus, 0)} idle GPU: nothing to split over")
    if n_jobs_queued >= idle_gpus:
        return ParallelPlan(
            "task", 1, f"{n_jobs_queued} jobs for {idle_gpus} GPUs: one job per GPU keeps every GPU busy"
        )
    tokens = token_count(request, geometry)
    if tokens < min_tokens:
        return ParallelPlan("task", 1, f"{tokens} tokens is too small a job to gain from splitting")
    rejected: list[str] = []
    for world_size in range(idle_gpus, 1, -1):
        for config in candidate_configs(world_size, request, geometry):
            problems = split_problems(request, config, geometry)
            if not problems:
                note = f"; not {'; '.join(rejected)}" if rejected else ""
                return ParallelPlan(
                    "split",
                    world_size,
                    f"one job on {idle_gpus} idle GPUs: {config.describe()}{note}",
                    config,
                )
            rejected.append(f"{config.describe()}: {' and '.join(problems)}")
    return ParallelPlan("task", 1, "no split fits: " + "; ".join(rejected))
