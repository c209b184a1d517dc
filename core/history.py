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
    def request(self) -> dict[str, Any]:
        request = self.record.get("request")
        return request if isinstance(request, dict) else {}

    @property
    def models(self) -> tuple[str, ...]:
        """Every model that made this video, in order: one, or each part's of a long video (``chain``)."""
        if self.record.get("model"):
            return (str(self.record["model"]),)
        if self.task != "chain":
            return (str(self.request["model"]),) if self.request.get("model") else ()
        parts = self.record.get("parts")
        names = (
            [part.get("model") for part in parts if isinstance(part, dict)] if isinstance(parts, list) else []
        )
        if not any(names):  # no parts listed: what the request names
            t2v = self.request.get("t2v")
            first = t2v.get("model") if isinstance(t2v, dict) else None
            continued = self.request.get("continue_model") if self.request.get("continuations") != 0 else None
            names = [first, continued, self.request.get("upscale_model")]
        models: list[str] = []
        for name in names:
            if name and str(name) not in models:
                models.append(str(name))
        return tuple(models)

    @property
    def model(self) -> str:
        """The model, or a long video's models joined by arrows (text to video first)."""
        return " → ".join(self.models)

    @property
    def partial(self) -> bool:
        """The frames a cancelled or failed job had written (``<name>_partial.mp4``)."""
        return bool(self.record.get("partial")) or self.path.stem.endswith("_partial")

    @property
    def prompt(self) -> str:
        """What the video shows: the prompt (a long video's text-to-video prompt), or for an upscale
        ``upscale xN of <file name>``; a partial result says so, with the frames it holds."""
        request = self.request
        t2v = request.get("t2v")
        if request.get("prompt"):
            text = str(request["prompt"])
        elif isinstance(t2v, dict) and t2v.get("prompt"):
            text = str(t2v["prompt"])
        elif request.get("video"):
            name = self.record.get("input") or Path(str(request["video"])).name
            scale = self.record.get("scale") or request.get("scale")
            text = f"{self.task} x{scale} of {name}" if scale else f"{self.task} of {name}"
        else:
            text = ""
        text = f"{text} ({self._partial_note()})" if self.partial else text
        part = self.record.get("chain_part")
        if isinstance(part, dict):
            text = f"[part {part.get('index')}/{part.get('of')} of an unfinished long video] {text}"
        return text

    def _partial_note(self) -> str:
        written = self.record.get("frames_written", self.record.get("frames"))
        total = self.record.get("source_frames")
        if total is None and self.record.get("frames") != written:  # older records: the input's count
            total = self.record.get("frames")
        frames = f", {written} of {total} frames" if written is not None and total else ""
        frames = frames or (f", {written} frames" if written is not None else "")
        return f"partial: {self.record.get('status', 'stopped')}{frames}"

    @property
    def seed(self) -> int | None:
        return self.record.get("seed")

    @property
    def created(self) -> str:
        return str(self.record.get("created", ""))

    @property
    def size_bytes(self) -> int:
        """The mp4's and its sidecar's size on disk."""
        return sum(p.stat().st_size for p in (self.path, self.path.with_suffix(".json")) if p.is_file())

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
    """Results under ``outputs_dir`` (any depth), newest first; filters match task and model exactly (a
    long video matches each of its models) and ``text`` anywhere in the shown prompt, ignoring case."""
    entries = [e for s in Path(outputs_dir).rglob("*.json") if (e := read_entry(s)) is not None]
    finished = {str(e.record.get("job_folder")) for e in entries if e.task == "chain"}
    entries = [e for e in entries if not ("chain_part" in e.record and str(e.path.parent) in finished)]
    if task:
        entries = [e for e in entries if e.task == task]
    if model:
        entries = [e for e in entries if model == e.model or model in e.models]
    if text:
        needle = text.lower()
        entries = [e for e in entries if needle in e.prompt.lower()]
    return sorted(entries, key=lambda e: e.record.get("unix_time", 0), reverse=True)


SHOWN_NAME_CHARS = 80
"""A path a caller passed is echoed in errors cut to this many characters of its file name."""


def shown_name(video: str | Path) -> str:
    """``video``'s file name for an error message: never the folder, never more than a line."""
    name = Path(str(video)).name
    return repr(name if len(name) <= SHOWN_NAME_CHARS else name[:SHOWN_NAME_CHARS] + "…")


SORT_ORDERS = ("newest", "oldest", "largest", "model")
"""How History can order the results."""


def sort_results(entries: list[ResultEntry], order: str = "newest") -> list[ResultEntry]:
    """``entries`` newest first, oldest first, largest on disk first, or by model (then newest)."""
    newest = sorted(entries, key=lambda e: e.record.get("unix_time", 0), reverse=True)
    if order == "oldest":
        return newest[::-1]
    if order == "largest":
        return sorted(newest, key=lambda e: e.size_bytes, reverse=True)
    if order == "model":
        return sorted(newest, key=lambda e: e.model)
    return newest


def find_result(outputs_dir: Path, video: str | Path) -> ResultEntry:
    """The entry of ``video``, which must be a result inside ``outputs_dir``. Any path that is not one
    (outside, missing, too long for the file system) is a ValueError naming only its file name."""
    try:
        path = Path(video).resolve()
        inside = path.is_relative_to(Path(outputs_dir).resolve())
        entry = read_entry(path.with_suffix(".json")) if inside else None
    except (OSError, ValueError):  # e.g. a name too long for the file system, a NUL byte
        inside, entry = True, None
    if not inside:
        raise ValueError(f"{shown_name(video)} is not in the outputs folder")
    if entry is None:
        raise ValueError(f"{shown_name(video)} is not a result with a generation record")
    return entry


def rerun_settings(outputs_dir: Path, video: str | Path, notes: list[str] | None = None) -> dict[str, Any]:
    """The request that made ``video`` (with its concrete seed): ``parse_request`` of it is that request.

    An input video that no longer exists (an upload in Gradio's cleared cache) is left out (``video``
    None, to be picked again), and ``notes`` gets a line saying so."""
    settings = dict(find_result(outputs_dir, video).record["request"])
    source = settings.get("video")
    if isinstance(source, str) and source and not Path(source).is_file():
        settings["video"] = None
        if notes is not None:
            notes.append(
                f"The input video {Path(source).name} is no longer there ({source}); pick the file again "
                "and run with these settings."
            )
    return settings


def delete_result(outputs_dir: Path, video: str | Path) -> list[Path]:
    """Delete a result's mp4 and sidecar; returns the removed files."""
    entry = find_result(outputs_dir, video)
    removed = [entry.path, entry.path.with_suffix(".json")]
    for path in removed:
        path.unlink()
    return removed
