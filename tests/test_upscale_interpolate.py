"""The Upscale tab's frame interpolation option: frames and fps doubled, sound kept, the record says so."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import av
import pytest

from core.jobs import Job
from core.tasks import task_for
from core.upscale.request import UpscaleRequest
from core.video_io import probe_video, read_record
from tests.rife_weights import save_tiny_flownet

pytest_plugins = ["tests.conftest_upscale"]


@pytest.mark.parametrize("method", ["blend", "rife"])
def test_upscale_then_interpolate(clip_64: Path, upscale_runner: SimpleNamespace, method: str) -> None:
    save_tiny_flownet(upscale_runner.settings.models_dir / "rife" / "flownet.pkl")  # RIFE's, by hand
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2, interpolate=method)
    record = task_for(request).run(upscale_runner, Job(request), request)
    path = Path(record["path"])
    info = probe_video(path)
    assert (info.width, info.height, info.frames) == (128, 128, 60)
    with av.open(str(path)) as container:
        assert container.streams.audio
    for saved in (read_record(path), json.loads(path.with_suffix(".json").read_text()), record):
        assert saved["interpolation"]["method"] == method and saved["frames"] == 60
        assert saved["fps"] == 2 * saved["interpolation"]["from_fps"]
