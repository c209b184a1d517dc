"""The worker pool with the real Runner in a CPU worker process: the tiny model end to end."""

from __future__ import annotations

from pathlib import Path

from core.jobs import JobQueue, JobStatus
from core.parallel.pool import WorkerPool
from core.settings import Settings
from core.tasks import parse_request
from core.video_io import probe_video, read_record

pytest_plugins = ["tests.conftest_parallel"]


def test_a_runner_in_a_worker_process_writes_the_video(parallel_settings: Settings) -> None:
    pool = WorkerPool(parallel_settings, [None])
    queue = JobQueue(pool.executors())
    try:
        job = queue.submit(parse_request({"model": "tiny-wan", "prompt": "a dog", "steps": 2, "seed": -1}))
        seen, report = [], job.report

        def recording_report(stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
            seen.append((stage, step, total))
            report(stage, step, total, detail)

        job.report = recording_report
        version = -1
        while not job.finished:
            version = job.wait_for_change(version, 1.0)
    finally:
        queue.shutdown()
        pool.shutdown()
    assert job.status == JobStatus.DONE, job.error
    assert [s for s in seen if s[0] == "denoising"] == [("denoising", 1, 2), ("denoising", 2, 2)]
    assert seen[-1][0] == "writing video" and any(stage.startswith("loading model") for stage, *_ in seen)
    assert [stage for stage, *_ in seen].count("starting") == 1
    path = Path(job.result["path"])
    assert path.parent == parallel_settings.outputs_dir and probe_video(path).frames == 9
    assert read_record(path)["seed"] == job.request.seed == job.result["seed"] >= 0
    assert job.result["job_id"] == job.id
