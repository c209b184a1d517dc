"""PSNR / SSIM between videos, checked against values computed here from the decoded frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.metrics import MAX_PSNR, compare_frames, compare_videos, main
from core.video_io import read_frames, write_video


def smooth_clip(frames: int = 5, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A clip with gradients and a moving square, so the encoder keeps it close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        clip[t, ..., 0] = (x * 255 // width + 10 * t) % 256
        clip[t, ..., 1] = y * 255 // height
        clip[t, ..., 2] = 128
        clip[t, 10:26, 8 + 4 * t : 24 + 4 * t] = rng.integers(0, 255, 3)
    return clip


@pytest.fixture
def clip_a(tmp_path: Path) -> Path:
    return write_video(tmp_path / "a.mp4", smooth_clip(), 16)


def test_identical_videos_give_max_psnr_and_ssim_one(clip_a: Path) -> None:
    result = compare_videos(clip_a, clip_a)
    assert result.frames == 5
    assert result.psnr == [MAX_PSNR] * 5 and result.mean_psnr == MAX_PSNR
    assert result.ssim == pytest.approx([1.0] * 5)
    assert any(n.startswith("LPIPS unavailable: ") for n in result.notes)


def test_noised_video_matches_psnr_computed_from_decoded_frames(clip_a: Path, tmp_path: Path) -> None:
    decoded = read_frames(clip_a)
    noise = np.random.default_rng(1).normal(0, 12, decoded.shape)
    shifted = np.roll(decoded, 2, axis=2).astype(float) + noise
    clip_b = write_video(tmp_path / "b.mp4", np.clip(shifted, 0, 255).astype(np.uint8), 16)
    a, b = read_frames(clip_a).astype(np.float64), read_frames(clip_b).astype(np.float64)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    expected = 10 * np.log10(255.0**2 / mse)

    result = compare_videos(clip_a, clip_b)
    assert result.psnr == pytest.approx(expected.tolist(), abs=1e-9)
    assert result.mean_psnr == pytest.approx(expected.mean())
    assert 10 < result.mean_psnr < 35
    assert all(0 < s < 0.95 for s in result.ssim)


def test_different_sizes_and_lengths_compare_common_frames_resized() -> None:
    a = smooth_clip(frames=5)
    b = a[:3].repeat(2, axis=1).repeat(2, axis=2)  # the same picture at twice the size
    result = compare_frames(a, b, with_lpips=False)
    assert result.frames == 3 and len(result.psnr) == len(result.ssim) == 3
    assert "compared the first 3" in result.notes[0]
    assert "B resized to 64x48" in result.notes[1]
    assert result.mean_psnr > 30


def test_cli_prints_a_table_and_writes_json(clip_a: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.json"
    main([str(clip_a), str(clip_a), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "PSNR dB" in printed and printed.count("\n") >= 6
    data = json.loads(out.read_text())
    assert data["mean"]["psnr_db"] == MAX_PSNR and data["mean"]["ssim"] == pytest.approx(1.0)
    assert len(data["psnr"]) == 5


def test_side_by_side_puts_a_beside_b_over_their_common_frames(tmp_path) -> None:
    from core.metrics import side_by_side
    from core.video_io import probe_video, read_frames, write_video

    rng = np.random.default_rng(3)
    a = write_video(tmp_path / "a.mp4", rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8), 12)
    b = write_video(tmp_path / "b.mp4", rng.integers(0, 255, (4, 16, 24, 3), dtype=np.uint8), 8)
    out = side_by_side(a, b, tmp_path / "ab.mp4")
    info = probe_video(out)
    assert (info.frames, info.width, info.height, info.fps) == (4, 96, 32, 12.0)
    left = read_frames(out)[:, :, :48].astype(int)
    assert np.abs(left - read_frames(a)[:4]).mean() < 20  # lossy H.264 of noise, but clearly A
