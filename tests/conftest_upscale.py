"""Shared fixtures of the upscale tests: the tiny FlashVSR and Real-ESRGAN weights, a short clip with audio,
a runner."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from core.device_models import DeviceModels
from core.settings import Settings
from core.tiny.esrgan import build_tiny_esrgan
from core.tiny.flashvsr import build_tiny_flashvsr
from core.upscale.loading import FlashVSRModel, load_flashvsr


def make_clip(path: Path, frames: int, width: int, height: int, fps: int = 30, audio: bool = True) -> Path:
    """An H.264 clip of moving bars, with a 440 Hz AAC tone when ``audio``."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=44100) if audio else None
        for index in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0] = (index * 8) % 255
            image[:, : index % width] = 200
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(44100 * frames / fps)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)[None]
            for start in range(0, samples, 1024):
                frame = av.AudioFrame.from_ndarray(
                    tone[:, start : start + 1024], format="fltp", layout="mono"
                )
                frame.sample_rate = 44100
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


@pytest.fixture(scope="session")
def tiny_flashvsr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_flashvsr(tmp_path_factory.mktemp("tiny-flashvsr"))


@pytest.fixture(scope="session")
def tiny_flashvsr(tiny_flashvsr_dir: Path) -> FlashVSRModel:
    return load_flashvsr(tiny_flashvsr_dir, "tiny-long", torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def clip_64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "bars.mp4", frames=30, width=64, height=64)


@pytest.fixture(scope="session")
def tiny_esrgan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_esrgan(tmp_path_factory.mktemp("tiny-esrgan"))


@pytest.fixture
def upscale_runner(tmp_path: Path, tiny_flashvsr_dir: Path, tiny_esrgan_dir: Path) -> SimpleNamespace:
    """What ``run_upscale`` uses of a Runner: settings, device and the pipeline cache."""
    models = tmp_path / "models"
    models.mkdir(parents=True)
    for card_id, folder in (("tiny-flashvsr", tiny_flashvsr_dir), ("tiny-esrgan", tiny_esrgan_dir)):
        (models / card_id).symlink_to(folder)
        (folder / ".built").touch()
    settings = Settings(outputs_dir=tmp_path / "outputs", models_dir=models)
    device = torch.device("cpu")
    return SimpleNamespace(settings=settings, device=device, models=DeviceModels(device, settings))
