"""Task level or split: one job per GPU while work is queued, one job over idle GPUs when it runs alone.

The choice reads measured speed-ups (:mod:`core.parallel.speedups`, ``presets/multigpu_speedups.yaml``,
written by ``bench/multigpu.py --record``): the queued jobs split when they would all finish sooner split one
after another than one per GPU (:func:`core.parallel.speedups.split_pays`). With no figure for the model,
GPU count and CFG, fixed rules decide instead: one job per GPU when there are at least as many jobs as idle
GPUs, else split. Either way a job under ``min_tokens`` never splits, and the layout must fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.parallel.config import CONTEXT_MODES, ParallelConfig, parse_parallel_flag
from core.parallel.geometry import ModelGeometry, geometry_for, split_problems, token_count
from core.parallel.speedups import Figure, cached_figures, split_figure, split_pays, workers_figure
from core.tasks.t2v import T2VRequest

MIN_SPLIT_TOKENS = 4096
DEFAULT_MODES = ("cfg", "cp")


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

    def describe(self) -> str:
        """One line for progress messages and the record, e.g. "split over 2 ranks (cfg 2): ..."."""
        if self.config is None:
            return f"one GPU: {self.reason}"
        return f"split over {self.config.describe()}: {self.reason}"


def context_choices(modes: tuple[str, ...]) -> tuple[str, ...]:
    """Context-parallel kinds ``modes`` allow, best first (``cp`` means Ulysses, else ring)."""
    if "cp" in modes:
        return ("ulysses", "ring")
    return tuple(m for m in modes if m in CONTEXT_MODES)


def candidate_configs(
    world_size: int, request: T2VRequest, geometry: ModelGeometry, modes: tuple[str, ...] = DEFAULT_MODES
) -> list[ParallelConfig]:
    """Ways to use ``world_size`` ranks that ``modes`` allow, best first: CFG halves, then Ulysses, then
    ring inside them."""
    configs = []
    use_cfg = "cfg" in modes and request.guidance > 1.0 and world_size % 2 == 0
    for cfg in (2, 1) if use_cfg else (1,):
        context = world_size // cfg
        if context == 1:
            configs.append(ParallelConfig(world_size, cfg=cfg))
            continue
        for kind in context_choices(modes):
            configs.append(ParallelConfig(world_size, cfg=cfg, **{kind: context}))
    return configs


def plan_parallel(
    n_jobs_queued: int,
    idle_gpus: int,
    request: T2VRequest,
    *,
    geometry: ModelGeometry | None = None,
    min_tokens: int = MIN_SPLIT_TOKENS,
    modes: tuple[str, ...] = DEFAULT_MODES,
    memory_level: int = 0,
    choice: str = "auto",
    figures: tuple[Figure, ...] | None = None,
) -> ParallelPlan:
    """Plan ``request`` given ``n_jobs_queued`` jobs waiting (itself included) and ``idle_gpus`` free GPUs.

    ``modes`` are the split kinds allowed (``--parallel``), ``memory_level`` the level the split ranks would
    run at, ``choice`` the request's ``multi_gpu``: "one" never splits, "split" skips the queue and size
    checks (a layout must still fit, else the job runs on one GPU and the reason says why); ``figures``:
    the measured speed-ups (default: ``presets/multigpu_speedups.yaml``).
    """
    modes = parse_parallel_flag(",".join(modes)) or DEFAULT_MODES
    if choice == "one":
        return ParallelPlan("task", 1, "one GPU asked for")
    if idle_gpus <= 1:
        return ParallelPlan("task", 1, f"{max(idle_gpus, 0)} idle GPU: nothing to split over")
    geometry = geometry or geometry_for(request.card)
    measured = ""
    if choice != "split":
        figures = cached_figures() if figures is None else figures
        figure = split_figure(
            figures, request.card.id, idle_gpus, request.guidance > 1.0, request.steps, request.height
        )
        if figure is None and n_jobs_queued >= idle_gpus:
            return ParallelPlan(
                "task", 1, f"{n_jobs_queued} jobs for {idle_gpus} GPUs: one job per GPU keeps every GPU busy"
            )
        tokens = token_count(request, geometry)
        if tokens < min_tokens:
            return ParallelPlan("task", 1, f"{tokens} tokens is too small a job to gain from splitting")
        if figure is not None:
            workers = workers_figure(figures, request.card.id, idle_gpus)
            pays = split_pays(figure.speedup, n_jobs_queued, idle_gpus, workers and workers.speedup)
            measured = f"{figure.describe()}{f', {workers.describe()}' if workers else ''}"
            if not pays:
                return ParallelPlan("task", 1, f"{n_jobs_queued} jobs finish sooner one per GPU: {measured}")
    rejected: list[str] = []
    for world_size in range(idle_gpus, 1, -1):
        for config in candidate_configs(world_size, request, geometry, modes):
            problems = split_problems(request, config, geometry, memory_level)
            if not problems:
                note = f"; not {'; '.join(rejected)}" if rejected else ""
                note += f"; {measured}" if measured else ""
                why = "split asked for" if choice == "split" else "one job"
                return ParallelPlan("split", world_size, f"{why} on {idle_gpus} idle GPUs{note}", config)
            rejected.append(f"{config.describe()}: {' and '.join(problems)}")
    if not rejected:
        rejected.append(f"the allowed modes ({','.join(modes)}) give no layout for {idle_gpus} GPUs")
    return ParallelPlan("task", 1, "no split fits: " + "; ".join(rejected))
