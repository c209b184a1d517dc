"""Past results: every mp4 under the outputs folder that has its sidecar JSON, with filters, the request
to run again, and delete."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ResultEntry:
    """One finished video and its generation record."""

    path: Path
    record: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.record.get("task", ""))

    @property
    def model(self) -> str:
        return str(self.record.get("model", ""))

    @property
    def prompt(self) -> str:
        request = self.record.get("request", {})
        return str(request.get("prompt") or request.get("video") or "")

    @property
    def seed(self) -> int | None:
        return self.record.get("seed")

    @property
    def created(self) -> str:
        return str(self.record.get("created", ""))

    def row(self) -> dict[str, Any]:
        """The fields a history table shows."""
        return {
            "created": self.created,
            "task": self.task,
            "model": self.model,
            "prompt": self.prompt,
            "seed": self.seed,
            "path": str(self.path),
        }


def read_entry(sidecar: Path) -> ResultEntry | None:
    """The entry for ``sidecar`` if it is a generation record with its mp4 beside it."""
    video = sidecar.with_suffix(".mp4")
    if not video.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or "task" not in record or "request" not in record:
        return None
    return ResultEntry(video, record)


def list_results(
    outputs_dir: Path, task: str | None = None, model: str | None = None, text: str | None = None
) -> list[ResultEntry]:
    """Results under ``outputs_dir`` (any depth), newest first; filters match task and model exactly
    and ``text`` anywhere in the prompt, ignoring case."""
    entries = [e for s in Path(outputs_dir).rglob("*.json") if (e := read_entry(s)) is not None]
    if task:
        entries = [e for e in entries if e.task == task]
    if model:
        entries = [e for e in entries if e.model == model]
    if text:
        needle = text.lower()
        entries = [e for e in entries if needle in e.prompt.lower()]
    return sorted(entries, key=lambda e: e.record.get("unix_time", 0), reverse=True)


def find_result(outputs_dir: Path, video: str | Path) -> ResultEntry:
    """The entry of ``video``, which must be a result inside ``outputs_dir``."""
    path = Path(video).resolve()
    if not path.is_relative_to(Path(outputs_dir).resolve()):
        raise ValueError(f"{video} is not in the outputs folder")
    entry = read_entry(path.with_suffix(".json"))
    if entry is None:
        raise ValueError(f"{video} is not a result with a generation record")
    return entry


def rerun_settings(outputs_dir: Path, video: str | Path) -> dict[str, Any]:
    """The request that made ``video`` (with its concrete seed): ``parse_request`` of it is that request."""
    return dict(find_result(outputs_dir, video).record["request"])


def delete_result(outputs_dir: Path, video: str | Path) -> list[Path]:
    """Delete a result's mp4 and sidecar; returns the removed files."""
    entry = find_result(outputs_dir, video)
    removed = [entry.path, entry.path.with_suffix(".json")]
    for path in removed:
        path.unlink()
    return removed
