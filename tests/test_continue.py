"""Continuation end to end on the tiny SkyReels-V2 DF model: frames, size, fps, audio, record, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import core.audio
import core.device_models
from core.continuation import ContinueRequest
from core.jobs import Job, JobCancelledError
from core.runner import Runner
from core.settings import Settings
from core.tasks import task_for
from core.video_io import probe_video, read_frames, read_record

pytest_plugins = ["tests.conftest_continue"]


class RecordingJob(Job):
    """A job that keeps every progress report."""

    def __init__(self, request: object) -> None:
        super().__init__(request)
        self.reports: list[tuple[str, int, int]] = []

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        self.reports.append((stage, step, total))
        super().report(stage, step, total, detail)


def audio_of(path: Path) -> np.ndarray:
    """All audio samples of ``path`` (first channel) as float."""
    with av.open(str(path)) as container:
        chunks = [frame.to_ndarray()[0] for frame in container.decode(container.streams.audio[0])]
    return np.concatenate(chunks)


def test_extending_a_clip_keeps_it_adds_frames_and_keeps_its_audio(
    continue_settings: Settings, clip_with_audio: Path
) -> None:
    runner = Runner(continue_settings, torch.device("cpu"))
    request = ContinueRequest(
        model="tiny-skyreels-df",
        video=str(clip_with_audio),
        prompt="a red car",
        add_frames=12,
        steps=2,
        seed=3,
    )
    job = RecordingJob(request)
    record = task_for(request).run(runner, job, request)

    path = Path(record["path"])
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (24 + 12, 48, 32, 24.0)
    assert (record["input_frames"], record["added_frames"], record["frames"]) == (24, 12, 36)
    assert record["input"] == "input 80x60 30 fps → 48x32 24 fps, using last 9 frames"
    assert (
        read_record(path)
        == json.loads(path.with_suffix(".json").read_text())
        == {k: v for k, v in record.items() if k != "path"}
    )
    steps = [r for r in job.reports if r[0] == "denoising"]
    assert steps[-1][1] == steps[-1][2] == len(steps)

    with av.open(str(path)) as container:
        (audio,) = container.streams.audio
        assert audio.codec_context.name == "aac"
    samples = audio_of(path)
    assert 0.9 * 44100 <= len(samples) <= 1.1 * 44100
    assert 0.15 < float(np.sqrt(np.mean(samples**2))) < 0.3  # the 0.3-amplitude tone survived
    first_part = read_frames(path)[:24].astype(int)
    assert first_part.std() > 10  # the clip's moving bars, not noise or black
    assert sorted(p.name for p in continue_settings.outputs_dir.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name]
    )


def test_continuation_only_goes_window_by_window_and_saves_just_the_new_frames(
    continue_settings: Settings, clip_with_audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned: list[tuple[int, int | None]] = []

    def plan_memory(card, width, height, frames, *args, decode_frames=None, **kwargs):
        planned.append((frames, decode_frames))
        return original_plan_memory(card, width, height, frames, *args, decode_frames=decode_frames, **kwargs)

    original_plan_memory = core.device_models.plan_memory
    monkeypatch.setattr(core.device_models, "plan_memory", plan_memory)
    runner = Runner(continue_settings, torch.device("cpu"))
    request = ContinueRequest(
        model="tiny-skyreels-df",
        video=str(clip_with_audio),
        prompt="a dog",
        seconds=0.4,
        overlap_history=5,
        base_num_frames=13,
        steps=1,
        seed=4,
        continuation_only=True,
    )
    assert request.add_frames == 12  # 0.4 s at 24 fps is 9.6 frames, rounded up to whole latent frames
    job = RecordingJob(request)
    record = task_for(request).run(runner, job, request)
    info = probe_video(Path(record["path"]))
    assert (info.frames, info.width, info.height) == (12, 48, 32)
    with av.open(record["path"]) as container:
        assert not container.streams.audio
    assert record["audio"] is False
    totals = {r[2] for r in job.reports if r[0] == "denoising"}
    assert totals == {2}  # 3 new latent frames, at most 2 per window of 4 with 2 overlapping: 2 windows
    assert planned == [(13, 5 + 12)]  # the memory plan covers one window and the decode of all it adds


def test_cancel_stops_the_job(continue_settings: Settings, clip_with_audio: Path) -> None:
    runner = Runner(continue_settings, torch.device("cpu"))
    request = ContinueRequest(model="tiny-skyreels-df", video=str(clip_with_audio), prompt="a cat", seed=1)
    job = Job(request)
    job.cancel()
    with pytest.raises(JobCancelledError):
        task_for(request).run(runner, job, request)
    assert not continue_settings.outputs_dir.exists() or not any(continue_settings.outputs_dir.iterdir())


def test_a_failed_audio_mux_keeps_the_silent_video_and_notes_it(
    continue_settings: Settings, clip_with_audio: Path, failing_remux: None
) -> None:
    runner = Runner(continue_settings, torch.device("cpu"))
    request = ContinueRequest(
        model="tiny-skyreels-df", video=str(clip_with_audio), prompt="a cat", add_frames=4, steps=1, seed=5
    )
    record = task_for(request).run(runner, RecordingJob(request), request)
    path = Path(record["path"])
    assert record["audio"] is False and "Input/output error" in record["audio_error"]
    assert probe_video(path).frames == 24 + 4
    with av.open(str(path)) as container:
        assert not container.streams.audio
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar == {k: v for k, v in record.items() if k != "path"}
    assert sorted(p.name for p in continue_settings.outputs_dir.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name]
    )
