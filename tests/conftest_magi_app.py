"""Fixtures for the MAGI-1 app tests: the tiny MAGI-1 snapshot built once, a runner that keeps it loaded,
a job that records its progress and previews, and a short clip with sound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from core import tiny
from core.jobs import Job
from core.runner import Runner
from core.settings import Settings
from core.video_io import probe_video
from tests.conftest_continue import make_clip

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class WatchedJob(Job):
    """A job that records its progress reports and, for each preview, how many frames the file had."""

    def __init__(self, request: object, cancel_after_previews: int = 0, fail_after_previews: int = 0) -> None:
        super().__init__(request)
        self.reports: list[tuple[str, int, int]] = []
        self.previews: list[tuple[str, int]] = []
        self.cancel_after_previews = cancel_after_previews
        self.fail_after_previews = fail_after_previews

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        self.reports.append((stage, step, total))
        super().report(stage, step, total, detail)

    def show_preview(self, path: str) -> None:
        self.previews.append((path, probe_video(Path(path)).frames))
        super().show_preview(path)
        if len(self.previews) == self.cancel_after_previews:
            self.cancel()
        if len(self.previews) == self.fail_after_previews:
            raise RuntimeError("disk on fire")


@pytest.fixture(scope="session")
def magi_models_dir(models_dir: Path) -> Path:
    """The shared models folder (tiny Wan) with the tiny MAGI-1 snapshot built into it too."""
    tiny.build("tiny-magi", models_dir / "tiny-magi")
    return models_dir


@pytest.fixture(scope="session")
def magi_runner(magi_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """One CPU runner for the module, so the tiny models load once."""
    outputs = tmp_path_factory.mktemp("magi-outputs")
    settings = Settings(outputs_dir=outputs, models_dir=magi_models_dir, offline=True, dev=True)
    return Runner(settings, torch.device("cpu"))


@pytest.fixture
def runner(magi_runner: Runner, tmp_path: Path) -> Runner:
    """The shared runner writing into this test's own outputs folder."""
    magi_runner.settings = Settings(
        outputs_dir=tmp_path / "outputs", models_dir=magi_runner.settings.models_dir, offline=True, dev=True
    )
    return magi_runner


@pytest.fixture(scope="session")
def clip_with_sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames at 30 fps (32 at 24 fps), 80x48, with 2 s of tone."""
    path = tmp_path_factory.mktemp("magi-clips") / "clip.mp4"
    return make_clip(path, frames=40, fps=30, width=80, height=48, audio_seconds=2.0)
