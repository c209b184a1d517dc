"""The upscale job end to end on the tiny model: sizes, frame count, audio, record, cancel, flat memory."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

import core.audio
import core.upscale.run
from core.encoders import quality_to_crf
from core.history import list_results
from core.jobs import Job
from core.memory.planner import UpscalePlan
from core.tasks import task_for
from core.upscale.loading import load_flashvsr
from core.upscale.request import UpscaleRequest
from core.upscale.streamer import FlashVSRStreamer
from core.validation import ConfigError
from core.video_io import probe_video, read_record

pytest_plugins = ["tests.conftest_upscale"]


def audio_streams(path: Path) -> int:
    with av.open(str(path)) as container:
        return len(container.streams.audio)


def stream_seconds(path: Path) -> tuple[float, float]:
    """(video, audio) durations in seconds, from the last packet's end in each stream."""
    ends = {"video": 0.0, "audio": 0.0}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is not None:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                ends[packet.stream.type] = max(ends[packet.stream.type], end)
    return ends["video"], ends["audio"]


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_clip_to_aligned_size_with_audio(
    scale: int, clip_64: Path, upscale_runner: SimpleNamespace
) -> None:
    """64x64 x2 is 128x128; x4 of the clip narrowed to 32 pixels wide is 128x128 too."""
    width = 64 if scale == 2 else 32
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=scale, max_input_width=width)
    record = task_for(request).run(upscale_runner, Job(request), request)
    info = probe_video(Path(record["path"]))
    assert (info.width, info.height, info.frames) == (128, 128, 30)
    assert audio_streams(Path(record["path"])) == 1
    embedded = read_record(Path(record["path"]))
    assert embedded["status"] == "done" and embedded["frames_written"] == 30 and embedded["scale"] == scale
    assert embedded["encoder"] == f"libx264 crf {quality_to_crf(8)}"
    assert embedded["noise_draw"] == "per-chunk"  # the official whole-video draw is CUDA's default
    assert embedded["speed"]["overlap_decode"] is True and embedded["speed"]["lossless"] is True
    assert embedded["speed"]["compile"] == {
        "compile": False,
        "reason": "auto: off on cpu (warm-up costs more than it saves)",
        "cuda_graphs": False,
    }
    assert Path(record["path"]).with_suffix(".json").is_file()


def test_cancel_keeps_a_playable_partial_file(clip_64: Path, upscale_runner: SimpleNamespace) -> None:
    class CancelAfterFirstChunk(Job):
        def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
            super().report(stage, step, total, detail)
            if stage.startswith("upscaling to 128x128") and step == 1:
                self.cancel()

    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2)
    record = task_for(request).run(upscale_runner, CancelAfterFirstChunk(request), request)
    assert record["status"] == "cancelled"
    partial = Path(record["path"])
    assert partial.name.endswith("_partial.mp4")
    assert probe_video(partial).frames == 21
    video_s, audio_s = stream_seconds(partial)
    assert video_s == pytest.approx(21 / 30, abs=0.01)
    assert audio_s == pytest.approx(video_s, abs=0.05)
    assert read_record(partial)["status"] == "cancelled" and read_record(partial)["audio"] is True
    sidecar = json.loads(partial.with_suffix(".json").read_text())
    for kept in (record, sidecar, read_record(partial)):  # the frames it holds, not the input's 30
        assert kept["frames"] == kept["frames_written"] == 21 and kept["source_frames"] == 30
        assert kept["partial"] is True and kept["status"] == "cancelled"
    outputs = upscale_runner.settings.outputs_dir
    (entry,) = list_results(outputs, task="upscale")
    assert (
        entry.partial
        and entry.prompt == f"upscale x2 of {clip_64.name} (partial: cancelled, 21 of 30 frames)"
    )
    assert not [p for p in outputs.glob("*.mp4") if not p.name.endswith("_partial.mp4")]
    models = upscale_runner.models
    assert models.loaded_id == "tiny-flashvsr" and models.loaded_level == 0
    models.unload()
    assert models.loaded_id is None


def test_failure_keeps_the_partial_file_and_says_so(
    clip_64: Path, upscale_runner: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingStreamer(FlashVSRStreamer):
        def run(self, frames, frame_count, seed=0, on_chunk=None):
            yield np.zeros((5, 128, 128, 3), np.uint8)
            raise MemoryError("out of memory")

    monkeypatch.setattr(core.upscale.run, "FlashVSRStreamer", FailingStreamer)
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2)
    with pytest.raises(RuntimeError, match=r"after 5 frames: out of memory; kept .*_partial\.mp4"):
        task_for(request).run(upscale_runner, Job(request), request)
    partial = next(upscale_runner.settings.outputs_dir.glob("*_partial.mp4"))
    assert probe_video(partial).frames == 5
    sidecar = json.loads(partial.with_suffix(".json").read_text())
    assert sidecar["status"] == "failed" and sidecar["partial"] is True
    assert sidecar["frames"] == 5 and sidecar["source_frames"] == 30


def test_long_input_keeps_memory_flat(tiny_flashvsr) -> None:
    """The input frames alive at once stay bounded by the schedule's window, however long the video."""
    live = {"now": 0, "peak": 0}

    def release() -> None:
        live["now"] -= 1

    def frames(count: int):
        for index in range(count):
            frame = np.full((128, 128, 3), index % 255, np.uint8)
            live["now"] += 1
            live["peak"] = max(live["peak"], live["now"])
            weakref.finalize(frame, release)
            yield frame

    def run(count: int) -> tuple[int, int, int]:
        live["peak"] = 0
        streamer = FlashVSRStreamer(tiny_flashvsr)
        written = sum(len(chunk) for chunk in streamer.run(frames(count), count))
        return written, live["peak"], streamer.last_kv_cache_bytes

    short_written, short_peak, short_cache = run(29)
    long_written, long_peak, long_cache = run(69)
    assert (short_written, long_written) == (29, 69)
    assert long_cache == short_cache > 0
    assert long_peak == short_peak <= 26


def test_request_validation(clip_64: Path) -> None:
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), seed=-1).with_seed()
    assert request.seed >= 0 and request.to_dict()["task"] == "upscale"
    assert quality_to_crf(10) == 12 and quality_to_crf(1) == 35 and request.engine == "flashvsr"
    unlimited = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), max_input_width=0, scale=2.0)
    assert unlimited.max_input_width is None and unlimited.scale == 2
    for bad in ({"scale": 3}, {"variant": "huge"}, {"quality": 11}, {"video": "/nope.mp4"}):
        with pytest.raises(ConfigError):
            UpscaleRequest(**{"model": "tiny-flashvsr", "video": str(clip_64), **bad})
    with pytest.raises(ConfigError, match="not an upscaling model"):
        UpscaleRequest(model="tiny-wan", video=str(clip_64))
    with pytest.raises(ConfigError, match="choose the video to upscale"):  # a rerun whose upload is gone
        UpscaleRequest(model="tiny-flashvsr", video=None)
    with pytest.raises(ConfigError, match=r"does not exist .*pick it again"):
        UpscaleRequest(model="tiny-flashvsr", video="/tmp/gradio/0123/gone.mp4")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Full variant's VAE is too slow on a CPU")
def test_full_variant_streams_on_gpu(tiny_flashvsr_dir: Path) -> None:
    model = load_flashvsr(tiny_flashvsr_dir, "full", torch.device("cuda"), torch.bfloat16)
    frames = [np.full((128, 256, 3), index * 7 % 255, np.uint8) for index in range(30)]
    chunks = list(FlashVSRStreamer(model).run(frames, len(frames)))
    assert [len(c) for c in chunks] == [21, 8, 1]
    assert chunks[0].shape[1:] == (128, 256, 3)


def test_a_failed_audio_remux_keeps_the_upscaled_video_and_its_sidecar(
    clip_64: Path, upscale_runner: SimpleNamespace, failing_remux: None
) -> None:
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2)
    record = task_for(request).run(upscale_runner, Job(request), request)
    path = Path(record["path"])
    assert record["status"] == "done" and record["audio"] is False
    assert "Input/output error" in record["audio_error"]
    assert probe_video(path).frames == 30 and audio_streams(path) == 0
    assert json.loads(path.with_suffix(".json").read_text())["audio_error"] == record["audio_error"]


def test_an_upscale_that_cannot_fit_is_refused_before_loading(
    clip_64: Path, upscale_runner: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory plan comes first: a size that fits no way is refused with its reason, nothing loaded."""
    refused = UpscalePlan(False, True, 46.1, "upscaling to 128x128 needs about 46.1 GB ...: choose x2")
    monkeypatch.setattr("core.upscale.run.plan_upscale", lambda *args, **kwargs: refused)
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2)
    with pytest.raises(ConfigError, match=r"needs about 46\.1 GB"):
        task_for(request).run(upscale_runner, Job(request), request)
    assert upscale_runner.models.loaded_id is None
