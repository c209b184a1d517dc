"""Jobs and the queue that runs them: status, progress with ETA, cancel, and a history of what ran."""

from __future__ import annotations

import contextvars
import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from core.cancel import JobCancelledError
from core.error_text import error_text
from core.queue_store import QueueStore


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass
class Progress:
    """Where a job is: a stage name and, for stepped stages, step i of N with an ETA."""

    stage: str = "queued"
    step: int = 0
    total: int = 0
    stage_started: float = field(default_factory=time.monotonic)
    detail: str = ""

    def eta_seconds(self) -> float | None:
        """Seconds left in this stage from the mean time per finished step; None before the first step."""
        if self.step <= 0 or self.total <= 0:
            return None
        per_step = (time.monotonic() - self.stage_started) / self.step
        return per_step * (self.total - self.step)

    def describe(self) -> str:
        """e.g. ``denoising 3/30 · ETA 0:42``; a stage that gives its own ``detail`` text shows that."""
        if self.detail:
            return self.detail
        if self.total <= 0:
            return self.stage
        text = f"{self.stage} {self.step}/{self.total}"
        eta = self.eta_seconds()
        if eta is not None:
            minutes, seconds = divmod(int(eta + 0.5), 60)
            text += f" · ETA {minutes}:{seconds:02d}"
        return text


_ids = itertools.count(1)


class Job:
    """One request moving through the queue. Thread-safe; watchers wait on :meth:`wait_for_change`."""

    def __init__(self, request: Any) -> None:
        self.id = f"job-{next(_ids)}"
        self.request = request
        self.status = JobStatus.QUEUED
        self.progress = Progress()
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.preview: str | None = None
        self.created_at = time.time()
        self.finished_at: float | None = None
        self._cancel = threading.Event()
        self._changed = threading.Condition(threading.RLock())  # re-entrant: finish() runs inside cancel()
        self._version = 0
        # The submitter's context variables (e.g. the Gradio request ZeroGPU bills); the job runs in it.
        self.context = contextvars.copy_context()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; a queued job is cancelled at once, a running one at its next step."""
        self._cancel.set()
        with self._changed:  # the same lock as start(): a job is either started or cancelled here
            if self.status == JobStatus.QUEUED:
                self.finish(JobStatus.CANCELLED)
        self._notify()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelledError` if cancel was asked for."""
        if self._cancel.is_set():
            raise JobCancelledError(self.id)

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        """Record progress; a new stage restarts the ETA clock."""
        if stage != self.progress.stage or total != self.progress.total:
            self.progress = Progress(stage=stage, step=step, total=total, detail=detail)
        else:
            self.progress.step, self.progress.detail = step, detail
        self._notify()

    def show_preview(self, path: str) -> None:
        """Point watchers at a playable file of the work so far (e.g. the chunks of a video made so far)."""
        self.preview = path
        self._notify()

    def start(self) -> bool:
        """Mark running; False if the job was cancelled while queued."""
        with self._changed:
            if self.status != JobStatus.QUEUED:
                return False
            self.status = JobStatus.RUNNING
        self.report("starting")
        return True

    def finish(
        self, status: JobStatus, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """Record the outcome; a job finishes once (later calls change nothing)."""
        with self._changed:
            if self.finished:
                return
            self.status, self.result, self.error = status, result, error
            self.finished_at = time.time()
            self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """Block until the job changes after version ``seen`` (or timeout); returns the new version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout=timeout)
            return self._version


Executor = Callable[[Job], dict[str, Any]]


class JobQueue:
    """First-in first-out queue served by one worker thread per executor (one executor per device).

    With a ``store`` every job is kept on disk until it finishes (:class:`core.queue_store.QueueStore`):
    a job the app was running or had queued when it stopped is still there at the next start."""

    def __init__(self, executors: list[Executor], store: QueueStore | None = None) -> None:
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._store = store
        self._closing = False
        self._threads = [
            threading.Thread(target=self._serve, args=(execute,), name=f"worker-{i}", daemon=True)
            for i, execute in enumerate(executors)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: Any) -> Job:
        job = Job(request)
        with self._lock:
            self._jobs[job.id] = job
        if self._store is not None:
            self._store.add(job.id, request.to_dict())
        self._pending.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job this session, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def position(self, job: Job) -> int:
        """How many queued jobs are ahead of ``job``."""
        queued = [j for j in self.jobs() if j.status == JobStatus.QUEUED]
        return queued.index(job) if job in queued else 0

    def cancel(self, job_id: str) -> bool:
        job = self.get(job_id)
        if job is None or job.finished:
            return False
        job.cancel()
        if job.finished:  # cancelled while queued: it will never run, so it leaves the store now
            self._forget(job)
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the workers. The store keeps what was queued or running, for the
        next start."""
        self._closing = True
        for job in self.jobs():
            if not job.finished:
                job.cancel()
        for _ in self._threads:
            self._pending.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _forget(self, job: Job) -> None:
        """``job`` has finished: it leaves the store (unless the app is closing, when it stays for the next
        start)."""
        if self._store is not None and not self._closing:
            self._store.finished(job.id)

    def _serve(self, execute: Executor) -> None:
        while (job := self._pending.get()) is not None:
            if not job.start():
                self._forget(job)
                continue
            if self._store is not None:
                self._store.started(job.id)
            try:
                result = job.context.run(execute, job)
            except JobCancelledError:
                job.finish(JobStatus.CANCELLED, error="cancelled")
            except Exception as exc:  # a failed job must never take the worker down
                traceback.print_exc()
                job.finish(JobStatus.FAILED, error=f"{type(exc).__name__}: {error_text(exc)}")
            else:
                job.finish(
                    JobStatus.CANCELLED if result.get("status") == "cancelled" else JobStatus.DONE, result
                )
            self._forget(job)
