"""Upscale keeps each frame's time (variable frame rate) so the copied audio stays in sync, and a clip
damaged part way gives Continue's clear message (issue 34, items 4 and 5)."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from test_upscale_run import stream_seconds

from core.jobs import Job
from core.tasks import task_for
from core.upscale.request import UpscaleRequest
from core.validation import ConfigError
from core.video_io import probe_video
from tests.conftest_upscale import make_clip

pytest_plugins = ["tests.conftest_upscale"]
TICK = Fraction(1, 90000)


def vfr_clip(path: Path) -> tuple[Path, list[float]]:
    """1 s at 24 fps then 1 s at 8 fps (32 frames), with 2 s of sound."""
    times = [i / 24 for i in range(24)] + [1 + i / 8 for i in range(8)]
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=16)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        video.codec_context.time_base = TICK
        sound = container.add_stream("aac", rate=44100)
        for index, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 7, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(time / TICK), TICK
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        tone = (0.2 * np.sin(np.arange(88200) / 10)).astype(np.float32)[None]
        for start in range(0, 88200, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate = 44100
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path, times


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(container.streams.video[0])]


@pytest.mark.parametrize("model", ["tiny-esrgan", "tiny-flashvsr"])
def test_variable_frame_rate_keeps_each_frames_time(
    model: str, tmp_path: Path, upscale_runner: SimpleNamespace
) -> None:
    clip, times = vfr_clip(tmp_path / "vfr.mp4")
    scale = 4 if model == "tiny-flashvsr" else 2
    request = UpscaleRequest(model=model, video=str(clip), scale=scale)
    record = task_for(request).run(upscale_runner, Job(request), request)
    out = Path(record["path"])
    got = frame_times(out)
    assert len(got) == 32
    assert np.allclose(np.array(got) - got[0], times, atol=0.002)
    video_end, audio_end = stream_seconds(out)
    assert abs(video_end - audio_end) < 0.15  # was ~0.77 s apart at a constant 17.26 fps


def damaged_clip(path: Path) -> Path:
    """60 frames of H.264 whose bytes from the middle on are partly zeroed: the decoder fails part way."""
    make_clip(path, 60, 64, 64, audio=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + len(data) // 5] = bytes(len(data) // 5)
    path.write_bytes(bytes(data))
    return path


def test_a_clip_damaged_part_way_says_so_and_keeps_what_was_upscaled(
    tmp_path: Path, upscale_runner: SimpleNamespace
) -> None:
    clip = damaged_clip(tmp_path / "broken.mp4")
    request = UpscaleRequest(model="tiny-esrgan", video=str(clip), scale=2)
    with pytest.raises(RuntimeError) as failed:
        task_for(request).run(upscale_runner, Job(request), request)
    message = str(failed.value)
    damaged = re.search(r"broken\.mp4 is damaged after (\d+) frames \(Invalid data found", message)
    assert damaged, message  # the frame it fails at varies by one with the decoder's threads
    assert "Errno" not in message and str(tmp_path) not in message
    partial = next((upscale_runner.settings.outputs_dir).glob("*_partial.mp4"))
    assert 20 < probe_video(partial).frames == int(damaged[1]) < 60


def test_outputs_beyond_4k_are_refused_when_asked(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "hd.mp4", 2, 1920, 1080, audio=False)
    with pytest.raises(
        ConfigError, match=r"1920x1080 x4 would be 7680x4224, more than 4K .* width of \d+ or less"
    ):
        UpscaleRequest(model="tiny-flashvsr", video=str(clip), scale=4)
    assert UpscaleRequest(model="tiny-flashvsr", video=str(clip), scale=2).scale == 2
    assert UpscaleRequest(model="tiny-flashvsr", video=str(clip), scale=4, max_input_width=900).scale == 4
