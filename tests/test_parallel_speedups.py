"""The task-or-split choice from measured speed-ups (presets/multigpu_speedups.yaml), and its fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.parallel.config import ParallelConfig
from core.parallel.planner import plan_parallel
from core.parallel.speedups import (
    FIGURES_FILE,
    Figure,
    load_figures,
    record_figure,
    split_figure,
    split_pays,
)
from core.settings import ROOT
from core.tasks import parse_request
from core.validation import ConfigError

BIG = {"model": "wan2.1-t2v-14b", "prompt": "a cat", "frames": 81, "width": 832, "height": 480, "steps": 50}


def figure(gpus: int, speedup: float, *, cfg: bool = True, steps: int = 50, size: str = "832x480") -> Figure:
    return Figure("split", "wan2.1-t2v-14b", gpus, speedup, cfg=cfg, steps=steps, size=size, device="test")


def test_split_pays_when_the_queue_finishes_sooner_split() -> None:
    assert split_pays(1.63, 1, 2)
    assert not split_pays(1.9, 2, 2), "two jobs on two GPUs: one each finishes in one job time"
    assert split_pays(3.5, 3, 4), "3 jobs split over 4 GPUs take 0.86 of a job time"
    assert not split_pays(3.5, 4, 4)
    assert split_pays(1.9, 2, 2, workers_speedup=1.0), "workers that only got 1.0x together"
    assert not split_pays(0.9, 1, 2), "a split slower than one GPU never pays"


def test_the_nearest_figure_by_steps_then_height() -> None:
    figures = (
        figure(2, 1.6, steps=3),
        figure(2, 1.95),
        figure(2, 1.97, size="1280x720"),
        figure(2, 1.8, cfg=False),
    )
    assert split_figure(figures, "wan2.1-t2v-14b", 2, True, 40, 480).speedup == 1.95
    assert split_figure(figures, "wan2.1-t2v-14b", 2, True, 4, 720).speedup == 1.6
    assert split_figure(figures, "wan2.1-t2v-14b", 2, True, 50, 704).speedup == 1.97
    assert split_figure(figures, "wan2.1-t2v-14b", 2, False, 4, 480).speedup == 1.8
    assert split_figure(figures, "wan2.1-t2v-14b", 4, True, 50, 480) is None
    assert split_figure(figures, "wan2.1-t2v-1.3b", 2, True, 50, 480) is None


def test_measured_figures_decide_task_or_split() -> None:
    request = parse_request(BIG)
    figures = (figure(2, 1.9), figure(4, 3.5))
    alone = plan_parallel(1, 2, request, figures=figures)
    assert alone.mode == "split" and "measured 1.90x on 2 GPUs" in alone.reason
    two = plan_parallel(2, 2, request, figures=figures)
    assert two.mode == "task" and two.reason.startswith("2 jobs finish sooner one per GPU: measured 1.90x")
    three = plan_parallel(3, 4, request, figures=figures)
    assert three.config == ParallelConfig(4, cfg=2, ulysses=2) and "3.50x" in three.reason
    slow = plan_parallel(1, 2, request, figures=(figure(2, 0.95),))
    assert slow.mode == "task" and "0.95x" in slow.reason


def test_without_a_figure_the_fixed_rules_decide() -> None:
    request = parse_request(BIG)
    assert plan_parallel(1, 4, request, figures=()).config == ParallelConfig(4, cfg=2, ulysses=2)
    assert "one job per GPU keeps every GPU busy" in plan_parallel(3, 2, request, figures=()).reason
    no_cfg = plan_parallel(
        1, 2, parse_request(BIG | {"guidance": 1.0, "steps": 4}), figures=(figure(2, 1.9),)
    )
    assert no_cfg.config == ParallelConfig(2, ulysses=2) and "measured" not in no_cfg.reason


def test_record_figure_replaces_the_same_measurement(tmp_path: Path) -> None:
    path = tmp_path / "speedups.yaml"
    assert load_figures(path) == ()
    record_figure(figure(2, 1.5), path)
    record_figure(figure(2, 1.7, cfg=False, steps=4), path)
    record_figure(figure(2, 1.9), path)
    assert {(f.cfg, f.speedup) for f in load_figures(path)} == {(True, 1.9), (False, 1.7)}
    assert path.read_text().startswith("# Measured multi-GPU speed-ups")
    path.write_text("figures:\n- kind: split\n  model: x\n  gpus: 2\n  speedup: 1.5\n  colour: red\n")
    with pytest.raises(ConfigError, match="colour"):
        load_figures(path)


def test_the_shipped_figures_load_and_cite_their_logs() -> None:
    figures = load_figures(FIGURES_FILE)
    assert figures
    for entry in figures:
        log = entry.source.split(" ")[0]
        assert (ROOT / log).is_file(), f"{entry.describe()} cites {log}, which is missing"
