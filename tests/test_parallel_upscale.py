"""FlashVSR's DiT split over two devices (two CPU "devices" here): the same frames as on one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.jobs import Job
from core.studio import Studio
from core.tasks import parse_request, task_for
from core.upscale.loading import load_flashvsr
from core.upscale.pipeline_split import crossings, pipeline_devices, split_dit, stage_report, unsplit_dit
from core.upscale.request import UpscaleRequest
from core.upscale.streamer import FlashVSRStreamer, plan_frames
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_upscale"]

CPU = torch.device("cpu")


def upscale(model, frames: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(FlashVSRStreamer(model).run(frames, len(frames), seed=3)))


def test_two_device_output_equals_one_device_output(tiny_flashvsr_dir: Path) -> None:
    model = load_flashvsr(tiny_flashvsr_dir, "tiny-long", CPU, torch.float32)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(30)]
    one_device = upscale(model, frames)
    split_dit(model, pipeline_devices(CPU, 2))
    assert stage_report(model.dit) == {"devices": ["cpu", "cpu"], "blocks": [1, 1]}
    two_devices = upscale(model, frames)
    assert crossings(model.dit) == plan_frames(30).chunks
    assert np.array_equal(one_device, two_devices)
    split_dit(model, [CPU])
    assert stage_report(model.dit) is None and not model.dit.blocks[1]._forward_pre_hooks
    assert np.array_equal(upscale(model, frames), one_device)
    with pytest.raises(ConfigError, match="LQ-fed layer"):
        split_dit(model, [CPU, CPU], boundary=0)
    unsplit_dit(model.dit)


def test_an_upscale_request_over_two_devices_records_the_split(upscale_runner, clip_64: Path) -> None:
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2, pipeline_gpus=2)
    try:
        record = task_for(request).run(upscale_runner, Job(request), request)
    finally:
        upscale_runner.models.unload()
    assert record["status"] == "done" and record["pipeline"] == {"devices": ["cpu", "cpu"], "blocks": [1, 1]}
    with pytest.raises(ConfigError, match="pipeline gpus"):
        UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), pipeline_gpus=3)


def test_a_one_gpu_studio_refuses_a_two_gpu_upscale_at_submit(settings, clip_64: Path) -> None:
    studio = Studio(settings)
    try:
        studio.devices = [torch.device("cuda", 0)]  # as on a one-GPU machine
        data = {"task": "upscale", "model": "tiny-flashvsr", "video": str(clip_64), "pipeline_gpus": 2}
        with pytest.raises(ConfigError, match="needs 2 GPUs; this studio runs on one"):
            studio.submit(data)
        assert studio.queue.jobs() == []
    finally:
        studio.shutdown()


def test_a_studio_without_a_gpu_refuses_a_two_gpu_upscale_at_submit(settings, clip_64: Path) -> None:
    """Only a studio with two devices (GPUs, or the tests' two CPU workers) takes a split upscale."""
    studio = Studio(settings)
    try:
        studio.devices = [CPU]  # as on a machine with no GPU
        data = {"task": "upscale", "model": "tiny-flashvsr", "video": str(clip_64), "pipeline_gpus": 2}
        with pytest.raises(
            ConfigError, match=r"needs 2 GPUs; this studio has no GPU \(cpu\): turn the split off"
        ):
            studio.submit(data)
        assert studio.queue.jobs() == []
        request = parse_request(data)
        studio.devices = [CPU, CPU]  # two CPU workers (the dispatcher tests' dev set-up): allowed
        task_for(request).check_devices(request, studio.devices)
        studio.devices = [torch.device("cuda", 0), torch.device("cuda", 1)]
        task_for(request).check_devices(request, studio.devices)
        one_gpu = parse_request(data | {"pipeline_gpus": 1})
        task_for(one_gpu).check_devices(one_gpu, [CPU])
    finally:
        studio.shutdown()
