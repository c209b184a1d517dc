"""The child-process side of a job: progress goes back over a queue, cancel comes in through shared memory.

Events are plain tuples so they pickle cheaply: ``("progress", number, stage, step, total, detail)``,
``("preview", number, path)`` (a :meth:`Job.show_preview` of the file so far), ``("done", number, record)``,
``("cancelled", number)``, ``("failed", number, text)``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from core.jobs import Job, JobCancelledError


class RemoteJob(Job):
    """A :class:`Job` inside a worker process, mirroring the parent's job ``job_id``.

    ``number`` identifies this run; the parent cancels it by writing that number into ``cancel_value``
    (a shared ``multiprocessing.Value``), so a late cancel can never hit the next job.
    """

    def __init__(self, job_id: str, number: int, request: Any, events: Any | None, cancel_value: Any) -> None:
        super().__init__(request)
        self.id = job_id
        self.number = number
        self._events = events
        self._cancel_value = cancel_value

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_value.value == self.number

    def check_cancelled(self) -> None:
        if self.cancel_requested:
            raise JobCancelledError(self.id)

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        super().report(stage, step, total, detail)
        if self._events is not None:
            self._events.put(("progress", self.number, stage, step, total, detail))

    def show_preview(self, path: str) -> None:
        super().show_preview(path)
        if self._events is not None:
            self._events.put(("preview", self.number, path))


def follow_remote(
    job: Job,
    number: int,
    events: Any,
    cancel_value: Any,
    poll_s: float,
    check_alive: Callable[[], None],
    on_failed: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The parent side of run ``number``: relay its events from ``events`` to ``job`` until it ends, and
    pass a cancel of ``job`` on through ``cancel_value``. Returns the record of a done run; raises
    :class:`JobCancelledError` for a cancelled one and ``RuntimeError`` (after ``on_failed``) for a failed
    one. ``check_alive`` runs whenever ``poll_s`` passes without an event and raises if the child died."""
    while True:
        if job.cancel_requested:
            cancel_value.value = number
        try:
            kind, event_number, *payload = events.get(timeout=poll_s)
        except queue.Empty:
            check_alive()
            continue
        if event_number != number:
            continue
        if kind == "progress":
            job.report(*payload)
        elif kind == "preview":
            job.show_preview(*payload)
        elif kind == "done":
            return payload[0]
        elif kind == "cancelled":
            raise JobCancelledError(job.id)
        else:
            on_failed()
            raise RuntimeError(payload[0])
