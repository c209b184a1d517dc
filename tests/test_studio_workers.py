"""How the Studio spreads jobs: one in-process runner, a worker process per device, or a split group."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import torch

from core.jobs import JobStatus
from core.settings import Settings
from core.studio import Studio
from core.video_io import probe_video


def test_one_device_runs_jobs_in_process(settings: Settings) -> None:
    studio = Studio(settings)
    try:
        assert studio.pool is None and studio.split is None
        assert studio.describe_workers() == "One worker on cpu."
    finally:
        studio.shutdown()


def test_several_devices_get_a_worker_process_each(settings: Settings, monkeypatch) -> None:
    monkeypatch.setattr("core.studio.pick_devices", lambda hardware, space: [torch.device("cpu")] * 2)
    studio = Studio(settings)
    try:
        assert studio.pool is not None and "One worker process per GPU" in studio.describe_workers()
        jobs = [
            studio.submit({"model": "tiny-wan", "prompt": f"a cat {i}", "steps": 1, "seed": i})
            for i in (1, 2)
        ]
        for job in jobs:
            for _ in studio.follow(job):
                pass
        assert [job.status for job in jobs] == [JobStatus.DONE, JobStatus.DONE]
        assert all(probe_video(Path(job.result["path"])).frames == 9 for job in jobs)
        workers = studio.pool.pids
        assert len(set(workers)) == 2 and os.getpid() not in workers
    finally:
        studio.shutdown()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in workers)
