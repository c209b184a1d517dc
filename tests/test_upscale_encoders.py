"""Export encoder choice: NVENC when it opens, else libx264; quality 1-10 as CRF / CQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import core.encoders
from core.encoders import (
    Encoder,
    choose_encoder,
    nvenc_available,
    nvenc_encoder,
    quality_to_crf,
    x264_encoder,
)
from core.video_io import VideoWriter, probe_video


def test_quality_maps_to_crf_and_cq() -> None:
    assert [quality_to_crf(q) for q in (1, 5, 8, 10)] == [35, 25, 17, 12]
    assert x264_encoder(8).options == {"crf": "17", "preset": "medium", "x264-params": "rc-lookahead=10"}
    assert nvenc_encoder(8).options == {"rc": "vbr", "cq": "17", "b": "0", "preset": "p5"}
    assert nvenc_encoder(10, gpu=1).options["gpu"] == "1"
    assert nvenc_encoder(10).describe() == "h264_nvenc cq 12"
    assert x264_encoder(1).describe() == "libx264 crf 35"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine may have NVENC")
def test_without_an_nvidia_gpu_nvenc_does_not_open_and_libx264_is_chosen() -> None:
    assert nvenc_available() is False
    assert choose_encoder(8) == x264_encoder(8)


def test_available_nvenc_is_chosen_unless_disallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.encoders, "nvenc_available", lambda: True)
    assert choose_encoder(6, gpu=0) == Encoder(
        "h264_nvenc", {"rc": "vbr", "cq": "22", "b": "0", "preset": "p5", "gpu": "0"}
    )
    assert choose_encoder(6, allow_nvenc=False).codec == "libx264"


@pytest.mark.skipif(not nvenc_available(), reason="NVENC does not open here")
def test_nvenc_writes_a_playable_h264_file(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "nvenc.mp4", 30, encoder=choose_encoder(8)) as writer:
        writer.write(np.zeros((10, 256, 256, 3), np.uint8))
    info = probe_video(tmp_path / "nvenc.mp4")
    assert (info.codec, info.frames, info.width) == ("h264", 10, 256)


def test_writer_takes_the_encoder_options(tmp_path: Path) -> None:
    path = tmp_path / "x264.mp4"
    with VideoWriter(path, 30, encoder=x264_encoder(1)) as writer:
        writer.write(np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), np.uint8))
    small = path.stat().st_size
    with VideoWriter(path, 30, encoder=x264_encoder(10)) as writer:
        writer.write(np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), np.uint8))
    assert path.stat().st_size > small and probe_video(path).frames == 5
