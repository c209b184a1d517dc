"""Input checks for continuation: resampling and cropping, and one clear error per bad file or request."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from imageio_ffmpeg import get_ffmpeg_exe

from core.continuation import ContinueRequest
from core.validation import ConfigError
from core.video_input import clockwise_rotation, iter_resampled, last_frames, open_input, upright_rgb
from weights.registry import get_card

pytest_plugins = ["tests.conftest_continue"]

CARD = get_card("tiny-skyreels-df")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, clip_maker) -> Path:
    make_clip = clip_maker
    folder = tmp_path_factory.mktemp("inputs")
    good = make_clip(folder / "good.mp4", frames=30, fps=30, width=80, height=60)
    make_clip(folder / "portrait.webm", frames=6, fps=12, width=60, height=80)
    make_clip(folder / "short.mkv", frames=3, fps=30, width=80, height=60)
    make_clip(folder / "sound.mp4", frames=0, fps=30, width=80, height=60, audio_seconds=0.5, video=False)
    (folder / "text.mp4").write_text("this is not a video")
    data = good.read_bytes()
    (folder / "truncated.mov").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("hello")
    return folder


def test_frames_are_resampled_to_the_model_fps_and_cropped_to_its_size(clips: Path) -> None:
    video = open_input(clips / "good.mp4", CARD)
    assert (video.frames, video.width, video.height, video.fps) == (24, 48, 32, 24)
    frames = np.stack(list(iter_resampled(video)))
    assert frames.shape == (24, 32, 48, 3) and frames.dtype == np.uint8
    assert np.array_equal(last_frames(video, 9), frames[-9:])
    assert video.describe(9) == "input 80x60 30 fps → 48x32 24 fps, using last 9 frames"


def test_slow_portrait_input_is_repeated_and_gets_the_portrait_preset(clips: Path) -> None:
    video = open_input(clips / "portrait.webm", CARD)
    assert (video.frames, video.width, video.height) == (12, 32, 48)
    frames = np.stack(list(iter_resampled(video)))
    assert np.array_equal(frames[0::2], frames[1::2])  # each 12 fps frame shown twice at 24 fps
    assert not np.array_equal(frames[0], frames[2])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text.mp4", "text.mp4 could not be read as a video"),
        ("truncated.mov", "truncated.mov could not be read as a video"),
        ("sound.mp4", "sound.mp4 has no video track"),
        ("short.mkv", "short.mkv is too short: 2 frames at 24 fps (0.08 s); the chosen overlap needs at"),
        ("notes.txt", "notes.txt: unsupported file type .txt"),
        ("missing.mp4", "input video not found"),
    ],
)
def test_each_bad_input_gives_one_clear_error(clips: Path, name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        open_input(clips / name, CARD, min_frames=9)


def test_request_defaults_and_snapping(clips: Path) -> None:
    video = str(clips / "good.mp4")
    request = ContinueRequest(model="tiny-skyreels-df", video=video, prompt="a cat")
    assert (request.overlap_history, request.base_num_frames, request.causal_block_size) == (9, 17, 1)
    assert request.add_frames == 96 and request.addnoise_condition == 20 and request.guidance == 6.0
    assert request.negative_prompt == "blurry" and request.cache is None
    assert ContinueRequest(model="tiny-skyreels-df", video=video, prompt="a", add_frames=10).add_frames == 12
    asynchronous = ContinueRequest(
        model="tiny-skyreels-df",
        video=video,
        prompt="a",
        ar_step=2,
        causal_block_size=2,
        overlap_history=5,
        base_num_frames=13,
        add_frames=5,
    )
    assert asynchronous.add_frames == 8
    big = ContinueRequest(model="skyreels-v2-df-14b-720p", video=video, prompt="a", ar_step=5)
    assert (big.causal_block_size, big.base_num_frames, big.overlap_history) == (5, 117, 17)
    cached = ContinueRequest(model="tiny-skyreels-df", video=video, prompt="a", cache={"threshold": 0.2})
    assert cached.cache == {"method": "flowcache", "threshold": 0.2, "warmup": 5}
    for cache, threshold in (
        ({"preset": "faster"}, 0.15),
        ({"method": "auto", "preset": "fast"}, 0.1),
        ({"preset": "off"}, None),
        ({"method": "none"}, None),
    ):
        parsed = ContinueRequest(model="tiny-skyreels-df", video=video, prompt="a", cache=cache).cache
        assert (parsed and parsed["threshold"]) == threshold
    assert cached.to_dict()["task"] == "continue" and cached.with_seed().seed >= 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "tiny-wan"}, "cannot continue videos"),
        ({"prompt": "  "}, "prompt must not be empty"),
        ({"overlap_history": 8}, "overlap must be 4k\\+1"),
        ({"overlap_history": 17}, "overlap \\(17 frames\\) must be shorter than the window \\(17 frames\\)"),
        (
            {"ar_step": 2, "causal_block_size": 2, "overlap_history": 9},
            "overlap 9 is 3 latent frames, not a whole number of causal blocks of 2; use 5 or 13",
        ),
        ({"addnoise_condition": 80}, "added noise must be between"),
        ({"cache": {"method": "teacache"}}, "cache method must be one of flowcache"),
        ({"cache": {"threshold": -1}}, "cache threshold must be between"),
        ({"cache": {"preset": "fastest"}}, "cache preset must be one of off, fast, faster"),
        ({"memory_level": "9"}, "memory level"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(clips: Path, fields: dict, message: str) -> None:
    data = {"model": "tiny-skyreels-df", "video": str(clips / "good.mp4"), "prompt": "a cat"} | fields
    with pytest.raises(ConfigError, match=message):
        ContinueRequest(**data)


def phone_clip(path: Path, clockwise: int, frames: int = 4) -> Path:
    """A clip stored as 80x60 landscape frames (a white block in the stored top-left corner) whose display
    matrix says to turn it ``clockwise`` degrees, as phones store portrait video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 80, 60, "yuv420p"
        stream.set_display_rotation(-clockwise)  # PyAV takes degrees counter-clockwise
        for _ in range(frames):
            image = np.full((60, 80, 3), 40, np.uint8)
            image[:20, :20] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def ffmpeg_first_frame(path: Path, width: int, height: int) -> np.ndarray:
    """The first frame as the ffmpeg command line shows it (it turns frames upright by default)."""
    command = [get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1"]
    raw = subprocess.run(
        [*command, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def test_portrait_phone_clip_is_continued_upright(tmp_path: Path) -> None:
    video = open_input(phone_clip(tmp_path / "phone.mp4", 90), CARD)
    assert (video.source_width, video.source_height, video.rotation) == (60, 80, 90)
    assert (video.width, video.height) == (32, 48)  # the portrait preset
    assert video.describe(9).startswith("input 60x80 24 fps, rotated 90° → 32x48 24 fps")
    frame = next(iter_resampled(video))
    assert frame.shape == (48, 32, 3)
    assert frame[:8, -8:].min() > 200 and frame[:8, :8].max() < 80  # stored top-left is now top-right
    assert frame[-8:, -8:].max() < 80


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_frames_are_turned_as_players_turn_them(tmp_path: Path, clockwise: int) -> None:
    path = phone_clip(tmp_path / f"turned{clockwise}.mp4", clockwise, frames=1)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert clockwise_rotation(frame) == clockwise
        ours = upright_rgb(frame)
        scaled = upright_rgb(frame, (30, 40) if clockwise % 180 else (40, 30))
    height, width = (80, 60) if clockwise % 180 else (60, 80)
    assert ours.shape == (height, width, 3)
    assert np.array_equal(ours, ffmpeg_first_frame(path, width, height))
    assert scaled.shape == ((40, 30, 3) if clockwise % 180 else (30, 40, 3))
    assert open_input(path, CARD).rotation == clockwise
