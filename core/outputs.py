"""Output files: names that sort by time, the generation record, and its sidecar JSON (written atomically)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

from core.video_io import METADATA_KEY, partial_path_for, temp_path_for

APP_NAME = "video-studio"
APP_VERSION = "0.1.0"
_RECORD_EXTRAS: ContextVar[dict[str, Any] | None] = ContextVar("record_extras", default=None)


def slug(text: str, length: int = 40) -> str:
    """A short file-name-safe form of ``text``."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:length].rstrip("-") or "video"


def new_output_path(
    outputs_dir: Path, task: str, title: str, seed: int | None = None, *, reserve: bool = True
) -> Path:
    """A new, unused ``.mp4`` path in ``outputs_dir`` named by date, task, title and seed.

    ``reserve``: the name is taken atomically by creating the video's hidden temporary file
    (:func:`core.video_io.temp_path_for`) with ``O_EXCL``, so two jobs (threads or GPU worker processes)
    starting in the same second with the same prompt and seed get different names; the writer later
    fills that file and renames it into place (or removes it). ``False`` only picks a free name.
    """
    outputs_dir = Path(outputs_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = f"_{seed}" if seed is not None else ""
    base = f"{stamp}_{task}_{slug(title)}{suffix}"
    if reserve:
        outputs_dir.mkdir(parents=True, exist_ok=True)
    counter = 0
    while True:
        path = outputs_dir / (f"{base}-{counter}.mp4" if counter else f"{base}.mp4")
        counter += 1
        if _taken(path):
            continue
        if not reserve:
            return path
        temp = temp_path_for(path)
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        if _taken(path):  # another job finished this name between the check and the reservation
            temp.unlink(missing_ok=True)
            continue
        return path


@contextlib.contextmanager
def reserved_output_path(outputs_dir: Path, task: str, title: str, seed: int | None = None) -> Iterator[Path]:
    """:func:`new_output_path` for a block that writes the video. Afterwards, finished or failed, the
    reservation goes (a writer with its own temporary file, e.g. the audio remux, leaves it behind). Safe
    against a job taking the name meanwhile: :func:`new_output_path` re-checks the name after reserving."""
    path = new_output_path(outputs_dir, task, title, seed)
    try:
        yield path
    finally:
        temp_path_for(path).unlink(missing_ok=True)


def _taken(path: Path) -> bool:
    """Whether ``path`` or anything named after it (sidecar, chain folder, partial video) exists."""
    taken = (path, path.with_suffix(".json"), path.with_suffix(""), partial_path_for(path))
    return any(p.exists() for p in taken)


@contextlib.contextmanager
def record_extras(fields: dict[str, Any]) -> Iterator[None]:
    """Every record :func:`base_record` starts inside the block also holds ``fields``: what the job's
    caller decided before it ran (e.g. the dispatcher's ``gpu_plan``), in the mp4 and the sidecar alike."""
    token = _RECORD_EXTRAS.set({**(_RECORD_EXTRAS.get() or {}), **fields})
    try:
        yield
    finally:
        _RECORD_EXTRAS.reset(token)


def base_record(task: str, job_id: str) -> dict[str, Any]:
    """The fields every generation record starts with (and those of :func:`record_extras`)."""
    return {
        "app": f"{APP_NAME} {APP_VERSION}",
        "task": task,
        "job_id": job_id,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "unix_time": time.time(),
    } | (_RECORD_EXTRAS.get() or {})


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.part")
    temp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(temp, path)
    return path


def sidecar_path(video: Path) -> Path:
    return Path(video).with_suffix(".json")


def save_output(
    outputs_dir: Path,
    task: str,
    title: str,
    seed: int | None,
    record: dict[str, Any],
    write: Callable[[Path, dict[str, Any]], object],
) -> dict[str, Any]:
    """Save a finished job: ``write(path, metadata)`` writes the video to a new output path (the metadata
    holds ``record``, which gets the file's name first, and ``title``), then the sidecar JSON follows.
    Returns ``record`` with the video's ``path`` added."""
    with reserved_output_path(outputs_dir, task, title, seed) as path:
        record["output"] = path.name
        write(path, {METADATA_KEY: record, "title": title})
    write_json_atomic(sidecar_path(path), record)
    record["path"] = str(path)
    return record
