"""The worker pool with fake executors in real processes: order, progress, cancel, crash, shutdown.

No torch here: the fake workers start in about a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

from core.jobs import Job, JobQueue, JobStatus
from core.parallel.devices import gpus_for_child
from core.parallel.pool import WorkerPool
from core.settings import Settings

VISIBLE_AT_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES")
"""What a process saw when it imported this module: a worker imports it to unpickle its executor factory,
before its target runs (as an import that touches CUDA would, e.g. torchao's)."""


def fake_executor(settings: Settings, gpu: int | None):
    """Steps through ``request["steps"]``, sleeping ``request["sleep"]`` each; ``crash`` kills the process."""

    def execute(job: Job) -> dict:
        request, started = job.request, time.time()
        if request.get("crash"):
            os._exit(3)
        if request.get("fail"):
            raise ValueError("bad input")
        for step in range(request.get("steps", 2)):
            job.report("denoising", step + 1, request.get("steps", 2))
            job.check_cancelled()
            time.sleep(request.get("sleep", 0.01))
        return {
            "status": "done",
            "pid": os.getpid(),
            "gpu": gpu,
            "name": request.get("name"),
            "started": started,
            "visible_at_import": VISIBLE_AT_IMPORT,
        }

    return execute


def request_steps_executor(settings: Settings, gpu: int | None):
    """For a validated request (``steps``, ``seed``): progress per step, then a one-frame mp4 and sidecar
    whose record names the process. Stands in for the Runner in the dispatch tests
    (tests/test_parallel_studio.py)."""
    import numpy as np

    from core.outputs import base_record, save_output
    from core.video_io import write_video

    def execute(job: Job) -> dict:
        request = job.request
        steps = getattr(request, "steps", 4)
        for step in range(steps):
            job.report("denoising", step + 1, steps)
            job.check_cancelled()
            time.sleep(0.2)
        record = base_record(request.task, job.id) | {"status": "done", "pid": os.getpid()}
        frames = np.zeros((1, 16, 16, 3), np.uint8)
        return save_output(
            settings.outputs_dir,
            request.task,
            "fake",
            request.seed,
            record | {"seed": request.seed},
            lambda path, metadata: write_video(path, frames, 8, metadata),
        )

    return execute


def wait(job: Job, timeout: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout
    version = -1
    while not job.finished and time.monotonic() < deadline:
        version = job.wait_for_change(version, 0.5)
    assert job.finished, f"{job.id} still {job.status}"
    return job


@pytest.fixture
def pool_and_queue(tmp_path) -> Iterator[tuple[WorkerPool, JobQueue]]:
    pool = WorkerPool(Settings(outputs_dir=tmp_path), [0, 1], make_executor=fake_executor)
    queue = JobQueue(pool.executors())
    try:
        yield pool, queue
    finally:
        queue.shutdown()
        pool.shutdown()


def spawned_children() -> list[psutil.Process]:
    """Live child processes started by multiprocessing's spawn (its resource tracker excluded)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_jobs_run_first_in_first_out_with_progress(tmp_path) -> None:
    pool = WorkerPool(Settings(outputs_dir=tmp_path), [None], make_executor=fake_executor)
    queue = JobQueue(pool.executors())
    try:
        jobs = [queue.submit({"name": i, "steps": 3}) for i in range(5)]
        for job in jobs:
            wait(job)
    finally:
        queue.shutdown()
        pool.shutdown()
    assert [job.status for job in jobs] == [JobStatus.DONE] * 5
    by_start = sorted(jobs, key=lambda job: job.result["started"])
    assert [job.result["name"] for job in by_start] == list(range(5))
    assert {job.result["pid"] for job in jobs} == set(pool.pids)
    assert all(job.progress.describe().startswith("denoising 3/3") for job in jobs)


def test_every_worker_takes_jobs(pool_and_queue) -> None:
    pool, queue = pool_and_queue
    jobs = [queue.submit({"name": i, "steps": 5, "sleep": 0.05}) for i in range(6)]
    assert all(wait(job).status == JobStatus.DONE for job in jobs)
    assert {job.result["gpu"] for job in jobs} == {0, 1}
    assert {job.result["pid"] for job in jobs} == set(pool.pids)


def test_each_worker_sees_its_gpus_from_its_first_import(pool_and_queue) -> None:
    """Worker 0 sees GPUs 0,1 and worker 1 sees 1,0 before anything is imported in it, so an import that
    starts CUDA cannot put both on the first GPU; the parent's own variable is left as it was."""
    _, queue = pool_and_queue
    seen = {}
    for _ in range(6):
        jobs = [queue.submit({"steps": 1, "sleep": 0.3}) for _ in range(2)]
        seen.update({job.result["gpu"]: job.result["visible_at_import"] for job in map(wait, jobs)})
        if len(seen) == 2:
            break
    assert seen == {0: "0,1", 1: "1,0"}
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == VISIBLE_AT_IMPORT


def test_gpus_for_child_translates_through_the_parents_variable(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with gpus_for_child([1]):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with gpus_for_child(None):
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with gpus_for_child([0, 1]):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_crashed_worker_fails_its_job_and_is_restarted(pool_and_queue) -> None:
    pool, queue = pool_and_queue
    before = pool.pids
    slow = queue.submit({"name": "slow", "steps": 20, "sleep": 0.05})
    crash = queue.submit({"crash": True})
    wait(crash)
    assert crash.status == JobStatus.FAILED and "exited with code 3" in crash.error
    after = [queue.submit({"name": i}) for i in range(4)]
    for job in [slow, *after]:
        assert wait(job).status == JobStatus.DONE
    assert len(set(pool.pids) & set(before)) == 1 and len(pool.pids) == 2
    assert {job.result["pid"] for job in after} <= set(pool.pids)
    failing = wait(queue.submit({"fail": True}))
    assert failing.status == JobStatus.FAILED and failing.error == "RuntimeError: ValueError: bad input"
    assert all(psutil.pid_exists(pid) for pid in pool.pids)


def test_cancel_a_queued_job_and_a_running_one(pool_and_queue) -> None:
    _, queue = pool_and_queue
    running = [queue.submit({"steps": 200, "sleep": 0.02}) for _ in range(2)]
    queued = queue.submit({"name": "never"})
    while any(job.progress.stage != "denoising" for job in running):
        time.sleep(0.05)
    assert queue.cancel(queued.id) and queued.status == JobStatus.CANCELLED
    for job in running:
        queue.cancel(job.id)
    for job in running:
        assert wait(job).status == JobStatus.CANCELLED and job.progress.step < 200
    assert queued.result is None and queued.progress.stage == "queued"
    assert wait(queue.submit({"name": "next"})).status == JobStatus.DONE


def test_shutdown_ends_every_worker(tmp_path) -> None:
    before = {p.pid for p in spawned_children()}  # e.g. a split group's ranks kept for the session
    pool = WorkerPool(Settings(outputs_dir=tmp_path), [0, 1, None], make_executor=fake_executor)
    queue = JobQueue(pool.executors())
    busy = queue.submit({"steps": 500, "sleep": 0.02})
    while busy.progress.stage != "denoising":
        time.sleep(0.05)
    pids = pool.pids
    assert {p.pid for p in spawned_children()} >= set(pids)
    queue.shutdown()
    pool.shutdown()
    assert busy.status == JobStatus.CANCELLED
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids
    )
    assert {p.pid for p in spawned_children()} <= before
