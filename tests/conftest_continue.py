"""Fixtures for the continuation tests: the tiny SkyReels-V2 DF model built once, and small input clips."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from core import tiny
from core.settings import Settings

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def make_clip(
    path: Path,
    *,
    frames: int,
    fps: int,
    width: int,
    height: int,
    audio_seconds: float = 0.0,
    video: bool = True,
) -> Path:
    """An mp4 (or any container PyAV picks by suffix) of moving colour bars, with a 440 Hz AAC tone."""
    with av.open(str(path), mode="w") as container:
        stream = None
        if video:
            codec = "libvpx" if path.suffix == ".webm" else "libx264"
            stream = container.add_stream(codec, rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=44100) if audio_seconds else None
        if sound is not None:
            sound.layout = "stereo"
        for index in range(frames if video else 0):
            x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
            image = np.broadcast_to((x + 8 * index) % 256, (height, width, 3)).astype(np.uint8).copy()
            image[..., 1] = (index * 16) % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        if sound is not None:
            rate, chunk = 44100, 1024
            total = int(audio_seconds * rate)
            for start in range(0, total, chunk):
                t = np.arange(start, min(total, start + chunk)) / rate
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
        if stream is not None:
            container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def clip_maker():
    """:func:`make_clip`, for test modules."""
    return make_clip


@pytest.fixture(scope="session")
def continue_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny SkyReels-V2 DF pipeline, built once."""
    folder = tmp_path_factory.mktemp("continue-models")
    tiny.build("tiny-skyreels-df", folder / "tiny-skyreels-df")
    return folder


@pytest.fixture
def continue_settings(continue_models_dir: Path, tmp_path: Path) -> Settings:
    return Settings(outputs_dir=tmp_path / "outputs", models_dir=continue_models_dir, offline=True, dev=True)


@pytest.fixture(scope="session")
def clip_with_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of 80x60 video at 30 fps with a 1 s stereo AAC tone."""
    folder = tmp_path_factory.mktemp("clips")
    return make_clip(folder / "input.mp4", frames=30, fps=30, width=80, height=60, audio_seconds=1.0)
