"""Measured multi-GPU speed-ups (``presets/multigpu_speedups.yaml``), read by the task-or-split planner.

Two kinds of figure, both written by ``bench/multigpu.py --record`` from timed jobs:

- ``split``: one job of ``model`` at ``steps``, with or without CFG, at ``size``, split over ``gpus`` GPUs:
  ``speedup`` is the one-GPU job time over the split job time (model loaded, prompt encoding to video).
- ``workers``: a worker per GPU on ``gpus`` GPUs: ``speedup`` is jobs/hour over one worker's.

:func:`split_figure` picks the figure for a request: same model, GPU count and CFG, then the nearest step
count and frame height (a figure is taken as it is for other step counts and sizes: the fixed costs a split
does not divide, prompt and decode, weigh more at few steps). With no figure the planner keeps its fixed
rules (see :mod:`core.parallel.planner`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from core.validation import ConfigError, as_choice

FIGURES_FILE = Path(__file__).resolve().parents[2] / "presets" / "multigpu_speedups.yaml"
KINDS = ("split", "workers")
HEADER = (
    "# Measured multi-GPU speed-ups read by core/parallel/speedups.py (the task-or-split planner).\n"
    "# Written by `python bench/multigpu.py split|jobs --gpus N --record`; one entry per model, kind,\n"
    "# GPU count, CFG, steps and size (a new measurement replaces the old one). Do not guess figures here.\n"
)


@dataclass(frozen=True)
class Figure:
    """One measurement: ``speedup`` of ``kind`` for ``model`` on ``gpus`` GPUs, and where it was taken."""

    kind: str
    model: str
    gpus: int
    speedup: float
    cfg: bool = True
    steps: int = 0
    size: str = ""
    split: str = ""
    device: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        as_choice("figure kind", self.kind, KINDS)
        if self.gpus < 2 or not self.speedup > 0:
            raise ConfigError(f"a speed-up figure needs 2+ GPUs and a positive speedup, got {self}")

    @property
    def key(self) -> tuple:
        return (self.kind, self.model, self.gpus, self.cfg, self.steps, self.size)

    @property
    def height(self) -> int:
        return int(self.size.lower().split("x")[1]) if "x" in self.size.lower() else 0

    def describe(self) -> str:
        cfg = "CFG" if self.cfg else "no CFG"
        what = f"{self.steps} steps, {cfg}, {self.size}" if self.kind == "split" else "a worker per GPU"
        return f"measured {self.speedup:.2f}x on {self.gpus} GPUs ({self.model}, {what}; {self.device})"


def load_figures(path: Path = FIGURES_FILE) -> tuple[Figure, ...]:
    """Every figure in ``path`` (none when the file is missing); ConfigError names a bad entry."""
    if not Path(path).is_file():
        return ()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    try:
        return tuple(Figure(**entry) for entry in data.get("figures") or ())
    except TypeError as exc:
        raise ConfigError(f"{Path(path).name}: {exc}") from None


@lru_cache(maxsize=4)
def cached_figures(path: Path = FIGURES_FILE) -> tuple[Figure, ...]:
    return load_figures(path)


def split_figure(
    figures: tuple[Figure, ...], model: str, gpus: int, cfg: bool, steps: int, height: int
) -> Figure | None:
    """The ``split`` figure for this job: same model, GPUs and CFG; nearest steps (by ratio), then height."""
    matching = [f for f in figures if f.kind == "split" and (f.model, f.gpus, f.cfg) == (model, gpus, cfg)]
    if not matching:
        return None
    return min(
        matching, key=lambda f: (abs(math.log(max(f.steps, 1) / max(steps, 1))), abs(f.height - height))
    )


def workers_figure(figures: tuple[Figure, ...], model: str, gpus: int) -> Figure | None:
    """The ``workers`` figure for ``model`` on ``gpus`` GPUs, else any model's on that many GPUs."""
    matching = [f for f in figures if f.kind == "workers" and f.gpus == gpus]
    return next((f for f in matching if f.model == model), matching[0] if matching else None)


def split_pays(split_speedup: float, jobs: int, gpus: int, workers_speedup: float | None = None) -> bool:
    """Whether ``jobs`` waiting jobs finish sooner split one after another over ``gpus`` GPUs (each in
    1/``split_speedup`` of a job time) than run one per GPU (``ceil(jobs / gpus)`` rounds, each a job time
    stretched by the per-GPU efficiency ``workers_speedup / gpus`` when measured)."""
    efficiency = min(1.0, workers_speedup / gpus) if workers_speedup else 1.0
    return jobs / split_speedup < math.ceil(jobs / gpus) / efficiency


def record_figure(figure: Figure, path: Path = FIGURES_FILE) -> None:
    """Add ``figure`` to ``path``, replacing the one with the same key (bench/multigpu.py --record)."""
    kept = [f for f in load_figures(path) if f.key != figure.key] + [figure]
    kept.sort(key=lambda f: (f.kind, f.model, f.gpus, not f.cfg, f.steps, f.size))
    entries = [{k: v for k, v in asdict(f).items() if v not in ("", 0) or k == "cfg"} for f in kept]
    Path(path).write_text(HEADER + yaml.safe_dump({"figures": entries}, sort_keys=False), encoding="utf-8")
    cached_figures.cache_clear()
