"""The job queue: order, cancel while queued, a failing job does not stop the worker, progress and ETA."""

from __future__ import annotations

import threading
import time

from core.jobs import Job, JobCancelledError, JobQueue, JobStatus, Progress


def wait_all(jobs: list[Job], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(j.finished for j in jobs):
        assert time.monotonic() < deadline, [j.status for j in jobs]
        time.sleep(0.01)


def test_jobs_run_in_order_and_record_results() -> None:
    ran: list[str] = []
    queue = JobQueue([lambda job: ran.append(job.request) or {"value": job.request}])
    jobs = [queue.submit(name) for name in "abc"]
    wait_all(jobs)
    assert ran == ["a", "b", "c"]
    assert [j.result for j in jobs] == [{"value": "a"}, {"value": "b"}, {"value": "c"}]
    assert all(j.status == JobStatus.DONE for j in jobs)
    queue.shutdown()


def test_cancel_of_a_queued_job_skips_it() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def execute(job: Job) -> dict:
        gate.wait(5)
        ran.append(job.request)
        return {}

    queue = JobQueue([execute])
    first, second = queue.submit("first"), queue.submit("second")
    assert queue.position(second) in (0, 1)
    assert queue.cancel(second.id)
    assert second.status == JobStatus.CANCELLED
    gate.set()
    wait_all([first, second])
    assert ran == ["first"]
    assert not queue.cancel(first.id)
    queue.shutdown()


def test_a_failing_job_is_reported_and_the_worker_keeps_going() -> None:
    def execute(job: Job) -> dict:
        if job.request == "bad":
            raise ValueError("broken input")
        return {"ok": True}

    queue = JobQueue([execute])
    bad, good = queue.submit("bad"), queue.submit("good")
    wait_all([bad, good])
    assert bad.status == JobStatus.FAILED and "broken input" in (bad.error or "")
    assert good.status == JobStatus.DONE
    queue.shutdown()


def test_running_job_stops_at_its_next_check() -> None:
    steps: list[int] = []

    def execute(job: Job) -> dict:
        for step in range(100):
            job.report("work", step + 1, 100)
            steps.append(step)
            if step == 2:
                job.cancel()
            job.check_cancelled()
        return {}

    queue = JobQueue([execute])
    job = queue.submit("x")
    wait_all([job])
    assert job.status == JobStatus.CANCELLED and steps == [0, 1, 2]
    queue.shutdown()


def test_progress_describes_step_and_eta() -> None:
    progress = Progress(stage="denoising", step=0, total=10, stage_started=time.monotonic() - 4)
    assert progress.eta_seconds() is None
    progress.step = 2
    assert 15 < (progress.eta_seconds() or 0) < 17
    assert progress.describe().startswith("denoising 2/10 · ETA 0:1")


def test_check_cancelled_raises_only_after_cancel() -> None:
    job = Job("x")
    job.check_cancelled()
    job.cancel()
    try:
        job.check_cancelled()
    except JobCancelledError:
        return
    raise AssertionError("expected JobCancelledError")


def test_a_job_finishes_once() -> None:
    job = Job("x")
    job.finish(JobStatus.DONE, {"value": 1})
    finished_at = job.finished_at
    job.finish(JobStatus.FAILED, error="late")
    job.cancel()
    assert (job.status, job.result, job.error) == (JobStatus.DONE, {"value": 1}, None)
    assert job.finished_at == finished_at


def test_a_cancel_that_found_the_job_queued_keeps_the_worker_from_starting_it() -> None:
    """The worker tries to start the job while cancel() is between its check and its finish: the job
    ends cancelled and never starts (it used to run, finish done, then be marked cancelled)."""
    worker_done = threading.Event()

    class SlowCancel(Job):
        def finish(self, status: JobStatus, result: dict | None = None, error: str | None = None) -> None:
            if status == JobStatus.CANCELLED:
                worker_done.wait(0.5)  # the worker's turn, if the lock lets it in
            super().finish(status, result, error)

    job = SlowCancel("x")
    started: list[bool] = []

    def work() -> None:
        started.append(job.start())
        if started[0]:
            job.finish(JobStatus.DONE, {})
        worker_done.set()

    canceller = threading.Thread(target=job.cancel)
    canceller.start()
    time.sleep(0.05)  # cancel() is now waiting inside finish()
    work()
    canceller.join()
    assert started == [False] and job.status == JobStatus.CANCELLED
