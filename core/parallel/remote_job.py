"""The child-process side of a job: progress goes back over a queue, cancel comes in through shared memory.

Events are plain tuples so they pickle cheaply: ``("progress", number, stage, step, total)``,
``("done", number, record)``, ``("cancelled", number)``, ``("failed", number, text)``.
"""

from __future__ import annotations

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

    def report(self, stage: str, step: int = 0, total: int = 0) -> None:
        super().report(stage, step, total)
        if self._events is not None:
            self._events.put(("progress", self.number, stage, step, total))
