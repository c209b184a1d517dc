"""Compare streams both videos through the upright reader (issue 34, items 2, 5, 6): memory bounded by a
few frames, rotation honoured, clear messages for files that are not videos, damage noted."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from test_continue_input import phone_clip

from core.metrics import MAX_PSNR, FrameStream, compare_streams, compare_videos
from core.validation import ConfigError
from core.video_io import probe_video, read_frames, write_video


def frames(count: int, height: int, width: int, seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    for index in range(count):
        yield np.roll(base, index, axis=1)


def peak_bytes(count: int) -> tuple[int, list[str]]:
    """The peak of Python allocations while comparing ``count`` frames of A against B (half size)."""
    tracemalloc.start()
    try:
        a, b = FrameStream("A", frames(count, 180, 320)), FrameStream("B", frames(count + 5, 90, 160, 1))
        result = compare_streams(a, b, with_lpips=False)
        return tracemalloc.get_traced_memory()[1], result.notes
    finally:
        tracemalloc.stop()


def test_memory_stays_a_few_frames_whatever_the_length() -> None:
    short, _ = peak_bytes(4)
    long, notes = peak_bytes(64)
    assert "lengths differ (64 vs 69 frames): compared the first 64" in notes[0]
    assert "B resized to 320x180" in notes[1]
    assert long < short + 4 * 180 * 320 * 3  # 60 more frames cost no more than a few frames


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=44100)
        tone = np.zeros((1, 1024), np.float32)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = 44100
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def test_an_audio_only_file_is_a_clear_error_without_its_folder(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", np.zeros((3, 32, 32, 3), np.uint8), 8)
    sound = audio_only(tmp_path / "song.mp4")
    with pytest.raises(ConfigError) as refused:
        compare_videos(video, sound)
    assert str(refused.value) == "song.mp4 has no video track" and str(tmp_path) not in str(refused.value)


def test_rotation_is_honoured_in_scores_and_in_the_joined_video(tmp_path: Path) -> None:
    stored = phone_clip(tmp_path / "stored.mp4", 0)
    portrait = phone_clip(tmp_path / "portrait.mp4", 90)  # the same stored frames, shown turned
    turned = np.stack([np.rot90(f, k=-1) for f in read_frames(stored)])
    upright = write_video(tmp_path / "upright.mp4", turned, 24)
    assert compare_videos(stored, portrait, with_lpips=False).mean_psnr < 20
    same = compare_videos(upright, portrait, with_lpips=False, output=tmp_path / "ab.mp4")
    assert same.mean_psnr > 35 and not [n for n in same.notes if "sizes differ" in n]
    info = probe_video(tmp_path / "ab.mp4")
    assert (info.width, info.height, info.frames) == (120, 80, 4)
    joined = read_frames(tmp_path / "ab.mp4")[0].astype(int)
    assert np.abs(joined[:, :60] - joined[:, 60:]).mean() < 10  # B upright beside A


def test_damage_part_way_keeps_the_frames_before_it() -> None:
    def damaged() -> Iterator[np.ndarray]:
        yield from frames(3, 16, 16)
        raise ConfigError("b.mp4 is damaged after 3 frames (Invalid data found)")

    result = compare_streams(FrameStream("A", frames(5, 16, 16)), FrameStream("B", damaged()), False)
    assert result.frames == 3 and result.psnr == [MAX_PSNR] * 3
    assert any("B stops after 3 frames: b.mp4 is damaged after 3 frames" in note for note in result.notes)
