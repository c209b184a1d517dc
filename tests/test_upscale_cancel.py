"""A FlashVSR cancel takes effect inside a chunk, before the next DiT block (issue 34, item 3)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from core.jobs import Job
from core.tasks import task_for
from core.upscale.request import UpscaleRequest
from core.upscale.streamer import FlashVSRStreamer

pytest_plugins = ["tests.conftest_upscale"]


def test_cancel_inside_the_first_chunk_stops_before_the_next_block(
    clip_64: Path, upscale_runner: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    seen: list = []
    run = FlashVSRStreamer.run

    def watched(self, *args, **kwargs):  # the user's cancel arrives while block 0 of chunk 0 runs
        blocks = self.model.dit.blocks
        seen.append(blocks)
        blocks[0].register_forward_hook(lambda *_: (calls.append(0), job.cancel()))
        blocks[-1].register_forward_hook(lambda *_: calls.append(len(blocks) - 1))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(FlashVSRStreamer, "run", watched)
    request = UpscaleRequest(model="tiny-flashvsr", video=str(clip_64), scale=2)
    job = Job(request)
    record = task_for(request).run(upscale_runner, job, request)
    assert record["status"] == "cancelled" and record["frames_written"] == 0
    assert calls == [0]  # block 0 ran once; no later block did
    assert not any(block._forward_pre_hooks for block in seen[0])  # the checks are gone after the run
