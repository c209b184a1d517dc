"""Adding a clip's sound and the job's record to a finished video; a failed remux keeps the video silent."""

from __future__ import annotations

from pathlib import Path

import av

from core.audio import add_record_and_audio
from core.video_io import read_record

pytest_plugins = ["tests.conftest_continue"]


def audio_samples(path: Path) -> int:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0
        return sum(frame.samples for frame in container.decode(container.streams.audio[0]))


def test_the_sound_and_the_record_go_into_the_video(clip_maker, tmp_path: Path) -> None:
    picture = clip_maker(tmp_path / "picture.mp4", frames=12, fps=24, width=48, height=32)
    source = clip_maker(tmp_path / "source.mkv", frames=30, fps=30, width=80, height=60, audio_seconds=1.0)
    record = {"task": "continue", "audio": True}
    add_record_and_audio(picture, source, record, duration=0.5)
    assert record == {"task": "continue", "audio": True}
    assert read_record(picture) == record
    assert 0.45 * 44100 <= audio_samples(picture) <= 0.6 * 44100  # cut at 0.5 s, to the packet
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_remux_keeps_the_silent_video_and_says_why(clip_maker, tmp_path: Path) -> None:
    picture = clip_maker(tmp_path / "picture.mp4", frames=12, fps=24, width=48, height=32)
    before = picture.read_bytes()
    broken = tmp_path / "source.mp4"
    broken.write_text("not a video")
    record = {"task": "continue", "audio": True}
    add_record_and_audio(picture, broken, record)
    assert record["audio"] is False and record["audio_error"]
    assert picture.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
