"""Shared fixtures: the tiny Wan model built once per session, settings in temp folders, a launched app."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import core.audio
from core import tiny
from core.jobs import Job
from core.settings import ROOT, Settings
from core.video_io import VideoWriter, to_uint8_frames

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Test modules import the shared fixture modules (tests/conftest_*.py, their ``pytest_plugins``) before
# pytest loads them as plugins: mark them for assert rewriting before that happens.
SHARED_FIXTURES = [f"tests.{path.stem}" for path in Path(__file__).parent.glob("conftest_*.py")]
pytest.register_assert_rewrite(*SHARED_FIXTURES)


@pytest.fixture(autouse=True)
def thaw_the_heap() -> Iterator[None]:
    """A job freezes what survives it until its model is released (``core.device_models``); a test's
    runners are dropped without a release, so thaw after each test to let their cycles be collected."""
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny Wan pipeline, built once."""
    folder = tmp_path_factory.mktemp("models")
    tiny.build("tiny-wan", folder / "tiny-wan")
    return folder


@pytest.fixture
def settings(models_dir: Path, tmp_path: Path) -> Settings:
    return Settings(outputs_dir=tmp_path / "outputs", models_dir=models_dir, offline=True, dev=True)


@pytest.fixture
def progress_lines(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Every progress line each job reports, by job id. Watching with ``follow`` samples: a short stage
    can come and go between two looks on a slow machine."""
    lines: dict[str, list[str]] = {}
    report = Job.report

    def recording(job: Job, *args: object, **kwargs: object) -> None:
        report(job, *args, **kwargs)
        lines.setdefault(job.id, []).append(job.progress.describe())

    monkeypatch.setattr(Job, "report", recording)
    return lines


@pytest.fixture
def encoded_frames(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], np.ndarray]:
    """The frames this test's writers handed to the encoder, by the mp4's path: what to compare exactly.
    Two mp4s of the same frames are not always the same: libx264's macroblock tree (crf with lookahead)
    reads uninitialised memory and now and then encodes the same frames differently (about 1 encode in
    100-200 in a long-running process; a few pixels off by up to 15, about 57 dB). Split ranks run in other
    processes and keep theirs next to the mp4 instead (``conftest_parallel._write_video_and_frames``)."""
    written: dict[Path, list[np.ndarray]] = defaultdict(list)
    write = VideoWriter.write

    def keeping(self: VideoWriter, frames: np.ndarray, times: list[float] | None = None) -> None:
        write(self, frames, times)
        written[self.path].append(to_uint8_frames(np.asarray(frames)))

    monkeypatch.setattr(VideoWriter, "write", keeping)
    return lambda path: np.concatenate(written[Path(path)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LaunchedApp:
    """``python app.py`` running on 127.0.0.1 in a subprocess."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.outputs: Path | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"app not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def launched_app(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    """The app with the dev models, its outputs in a temp folder."""
    folder = tmp_path_factory.mktemp("app")
    app = LaunchedApp(
        ["--dev", "--offline", "--models-dir", str(models_dir), "--outputs", str(folder / "outputs")],
        folder / "app.log",
    )
    app.outputs = folder / "outputs"
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


@pytest.fixture
def failing_remux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding the source's sound fails as an FFmpeg I/O error would (``core.audio.remux_with_audio``)."""

    def fail(*args: object, **kwargs: object) -> bool:
        raise av.FFmpegError(-5, "Input/output error")

    monkeypatch.setattr(core.audio, "remux_with_audio", fail)
