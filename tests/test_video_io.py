"""The mp4 writer: H.264 yuv420p, the asked frames/size/fps, metadata, atomic commit, partial on failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.video_io import VideoWriter, probe_video, read_frames, read_record, write_video


def clip(frames: int = 5, height: int = 32, width: int = 48) -> np.ndarray:
    ramp = np.linspace(0, 1, frames * height * width * 3, dtype=np.float32)
    return ramp.reshape(frames, height, width, 3)


def test_written_video_has_asked_frames_size_fps_and_metadata(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", clip(), 16, {"comment": {"seed": 3}, "title": "hello"})
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (5, 48, 32, 16.0)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert read_record(path) == {"seed": 3} and info.metadata["title"] == "hello"
    assert read_frames(path).shape == (5, 32, 48, 3)
    assert b"rc_lookahead=10" in path.read_bytes()  # x264's settings line: the short lookahead ran


def test_nothing_appears_at_the_target_until_commit(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "b.mp4", 8)
    writer.write(clip(2))
    assert not (tmp_path / "b.mp4").exists()
    writer.commit()
    assert (tmp_path / "b.mp4").exists() and not writer.temp_path.exists()


def test_failure_keeps_a_playable_partial_file(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        VideoWriter(tmp_path / "c.mp4", 8, {"comment": json.dumps({"a": 1})}) as w,
    ):
        w.write(clip(3))
        raise RuntimeError("boom")
    assert not (tmp_path / "c.mp4").exists()
    assert probe_video(tmp_path / "c_partial.mp4").frames == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c_partial.mp4"]


def test_failure_before_any_frame_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "d.mp4", 8):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
