"""MAGI-1 continuing from a still picture on the tiny model: a one-frame prefix, whole new chunks at the
preset nearest the picture's shape, the record naming the picture; a clip and a picture are not both taken."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from core.tasks import parse_request
from core.validation import ConfigError
from core.video_io import probe_video, read_record

pytest_plugins = ["tests.conftest_magi_app"]


def test_a_picture_starts_magi_chunks(runner, tmp_path: Path) -> None:
    from tests.conftest_magi_app import WatchedJob

    start = tmp_path / "start.png"
    Image.new("RGB", (90, 60), (200, 60, 20)).save(start)
    request = parse_request(
        {"task": "continue", "model": "tiny-magi", "prompt": "a cat", "image": str(start), "chunks": 1}
    )
    assert request.video is None and request.image == str(start)
    record = runner.execute(WatchedJob(request))
    path = Path(record["path"])
    info = probe_video(path)
    assert (info.frames, info.fps) == (24, 24.0)
    assert (info.width, info.height) == (record["width"], record["height"])
    assert (record["input_frames"], record["context_frames"], record["added_frames"]) == (1, 1, 24)
    assert record["image"]["name"] == "start.png" and not record["audio"]
    assert read_record(path)["request"]["image"] == str(start)


def test_magi_takes_a_clip_or_a_picture(clip_with_sound: Path, tmp_path: Path) -> None:
    start = tmp_path / "start.png"
    Image.new("RGB", (64, 64)).save(start)
    base = {"task": "continue", "model": "tiny-magi", "prompt": "x"}
    with pytest.raises(ConfigError, match="not both"):
        parse_request(base | {"video": str(clip_with_sound), "image": str(start)})
    with pytest.raises(ConfigError, match="Choose a clip to extend or a start image"):
        parse_request(base)
    with pytest.raises(ConfigError, match="no input video or image"):
        parse_request(base | {"task": "t2v", "image": str(start)})
