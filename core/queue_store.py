"""The job queue on disk, so that it survives the app: every job not yet finished, with its request.

The file (``<outputs>/.studio/queue.json``) is rewritten atomically whenever a job is submitted, starts or
finishes. When the app starts again, the jobs it held as queued are queued again, and those it held as
running (the app died under them) are kept as interrupted: they are listed, not rerun, and whatever their
writer kept of the video (a partial file) stays where it is.

The queue can also be saved to a file of its own and loaded again: the saved file is a JSON list of request
mappings, the format batch prompt lists take, so ``python -m core.batch saved.json`` runs it headless.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.outputs import write_json_atomic
from core.validation import ConfigError

QUEUE_FILE = Path(".studio") / "queue.json"
INTERRUPTED = "the app stopped while this job ran; its partial video, if one was written, is kept"


@dataclass
class StoredJob:
    """A job as the file holds it."""

    id: str
    request: dict[str, Any]
    status: str  # queued, running, interrupted
    submitted: float = field(default_factory=time.time)
    note: str = ""


class QueueStore:
    """The unfinished jobs of this app, kept in ``path``; safe to call from every worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._jobs: dict[str, StoredJob] = {}
        self._interrupted: list[StoredJob] = []
        """Kept apart: their ids are an earlier run's, which this run's new jobs may take again."""
        self._lock = threading.Lock()

    def load(self) -> list[StoredJob]:
        """What the file held when the app stopped, running jobs marked interrupted (empty when missing
        or unreadable: a broken file must not stop the app, it is set aside as ``queue.json.broken``)."""
        if not self.path.is_file():
            return []
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
            found = [StoredJob(**entry) for entry in entries]
        except (OSError, ValueError, TypeError):
            self.path.replace(self.path.with_name(self.path.name + ".broken"))
            return []
        for job in found:
            if job.status == "running":
                job.status, job.note = "interrupted", INTERRUPTED
        return found

    def keep_interrupted(self, jobs: list[StoredJob]) -> None:
        """Keep ``jobs`` (interrupted or refused on restart) in the file, to be listed until cleared."""
        with self._lock:
            self._interrupted.extend(jobs)
            self._save()

    def add(self, job_id: str, request: dict[str, Any]) -> None:
        with self._lock:
            self._jobs[job_id] = StoredJob(job_id, request, "queued")
            self._save()

    def started(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._jobs:
                self._jobs[job_id].status = "running"
                self._save()

    def finished(self, job_id: str) -> None:
        with self._lock:
            if self._jobs.pop(job_id, None) is not None:
                self._save()

    def interrupted(self) -> list[StoredJob]:
        """Jobs the app was running (or could not queue again) when it last stopped."""
        with self._lock:
            return list(self._interrupted)

    def clear_interrupted(self) -> None:
        with self._lock:
            self._interrupted = []
            self._save()

    def _save(self) -> None:
        jobs = [*self._interrupted, *self._jobs.values()]
        write_json_atomic(self.path, [asdict(job) for job in jobs])


def save_requests(path: Path, requests: list[dict[str, Any]]) -> Path:
    """Write ``requests`` as a JSON list of request mappings (a batch prompt list) to ``path``."""
    return write_json_atomic(Path(path), requests)


def load_requests(path: Path) -> list[dict[str, Any]]:
    """The request mappings of a saved queue (a JSON list of objects)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "a saved queue is a JSON list of requests; this file could not be read as one"
        ) from exc
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ConfigError("a saved queue is a JSON list of requests (objects with a task and model)")
    return data
