"""Batches: a prompt list (txt, CSV or JSON) run as one job per row, resumable, with a summary.

Each row is validated by :func:`core.tasks.parse_request` (a bad row is reported, not fatal) and
queued on the Studio's JobQueue, which spreads the rows over every worker. A finished video is moved
into the batch folder as ``row-<n>-<slug>.mp4`` with its sidecar JSON (mp4 first, sidecar last, each by
``os.replace``), so a row whose mp4 and matching sidecar are there is done: running the batch again
skips it, and a stopped batch resumes where it was. The batch folder is named by the file's stem and a
hash of its content, so the same file resumes while two different files of the same name never share
(or overwrite) a folder. A file with no rows is refused before anything is created.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.batch_files import resolve_row_files
from core.errors import job_error_message
from core.jobs import Job, JobStatus
from core.lineup import machine_lineup
from core.outputs import sidecar_path, slug, write_json_atomic
from core.settings import Settings
from core.studio import Studio
from core.tasks import parse_request
from core.validation import ConfigError

IMAGE_FIELDS = ("image", "end_image")
TEXT_FIELDS = {"task", "model", "prompt", "negative_prompt", "memory_level", "video", "variant"}
TEXT_FIELDS |= set(IMAGE_FIELDS)
SUMMARY_FIELDS = ("index", "prompt", "status", "seed", "time_s", "output", "error")


@dataclass
class BatchRow:
    """One row of the batch and what became of it."""

    index: int
    prompt: str
    status: str = "pending"  # pending, skipped, queued, running, done, failed, cancelled, bad
    seed: int | None = None
    time_s: float | None = None
    output: str = ""
    error: str = ""


def cell_value(name: str, text: str) -> Any:
    """A CSV cell as the field expects it: text fields as is, others as JSON (numbers, objects)."""
    if name in TEXT_FIELDS:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def image_row(raw: dict[str, Any]) -> dict[str, Any]:
    """A row with an ``image`` is an image-to-video request unless it names its task (its files are
    checked and resolved like a video's: :func:`core.batch_files.resolve_row_files`)."""
    return {"task": "i2v", **raw} if raw.get("image") else raw


def load_rows(path: Path, content: bytes | None = None) -> list[Any]:
    """The rows of a prompt list: ``.txt`` one prompt a line (``#`` comments), ``.csv`` with a header
    of request fields, ``.json`` a list of objects. ``content``: the file's bytes, if already read.
    A list with no rows (empty, comments only, ``[]``, a header only) is a ConfigError."""
    path = Path(path)
    if content is None:
        content = path.read_bytes()
    text = content.decode("utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = json.loads(text) if text.strip() else []
        if not isinstance(rows, list):
            raise ConfigError(f"{path.name}: expected a JSON list of objects")
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        rows = [
            {k.strip(): cell_value(k.strip(), v.strip()) for k, v in row.items() if k and v and v.strip()}
            for row in reader
        ]
    elif suffix == ".txt":
        lines = (line.strip() for line in text.splitlines())
        rows = [{"prompt": line} for line in lines if line and not line.startswith("#")]
    else:
        raise ConfigError(f"{path.name}: a prompt list must be .txt, .csv or .json")
    if not rows:
        raise ConfigError(f"{path.name}: the batch file has no rows")
    return rows


def row_output_path(batch_dir: Path, index: int, prompt: str) -> Path:
    """The fixed place of row ``index``'s video in the batch folder."""
    return Path(batch_dir) / f"row-{index:04d}-{slug(prompt or 'video')}.mp4"


def comparable(request_dict: dict[str, Any], keep_seed: bool) -> dict[str, Any]:
    return {k: v for k, v in request_dict.items() if keep_seed or k != "seed"}


def finished_record(path: Path, request: Any) -> dict[str, Any] | None:
    """The sidecar record of an earlier run of this very request at ``path``, else None."""
    sidecar = sidecar_path(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    keep_seed = getattr(request, "seed", 0) >= 0
    done = comparable(record.get("request", {}), keep_seed) == comparable(request.to_dict(), keep_seed)
    return record if done else None


def move_result(result: dict[str, Any], target: Path, batch: dict[str, Any]) -> dict[str, Any]:
    """Move a finished job's mp4, then its sidecar (naming the batch row), to ``target``."""
    source = Path(result["path"])
    record = {k: v for k, v in result.items() if k != "path"} | {"output": target.name, "batch": batch}
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    write_json_atomic(sidecar_path(target), record)
    sidecar_path(source).unlink(missing_ok=True)
    return record


def write_summary(batch_dir: Path, rows: list[BatchRow]) -> None:
    """``summary.json`` and ``summary.csv`` in the batch folder, one entry per row."""
    data = [asdict(row) for row in rows]
    write_json_atomic(Path(batch_dir) / "summary.json", {"rows": data})
    temp = Path(batch_dir) / ".summary.csv.part"
    with temp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(data)
    os.replace(temp, Path(batch_dir) / "summary.csv")


def mark_deleted(outputs_dir: Path, video: Path) -> list[Path]:
    """Mark the rows of every batch summary (``batches/*/summary.json`` and ``.csv``) whose output is
    ``video`` as ``deleted`` (the row stays, so the summary still lists every prompt); returns the
    summaries changed."""
    changed = []
    target = Path(video).resolve()
    for summary in sorted((Path(outputs_dir) / "batches").glob("*/summary.json")):
        try:
            rows = [BatchRow(**row) for row in json.loads(summary.read_text(encoding="utf-8"))["rows"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        hits = [row for row in rows if row.output and Path(row.output).resolve() == target]
        for row in hits:
            row.status, row.error = "deleted", "deleted from History"
        if hits:
            write_summary(summary.parent, rows)
            changed.append(summary)
    return changed


def content_hash(content: bytes) -> str:
    """The sha256 of a prompt list's bytes (hex); its first 8 characters name the batch folder."""
    return hashlib.sha256(content).hexdigest()


def batch_folder(outputs_dir: Path, prompt_file: Path, content: bytes | None = None) -> Path:
    """``batches/<stem-slug>-<8 hex of sha256>``: the same file (same bytes) resumes in its folder,
    a different file of the same name gets its own."""
    if content is None:
        content = Path(prompt_file).read_bytes()
    return Path(outputs_dir) / "batches" / f"{slug(Path(prompt_file).stem)}-{content_hash(content)[:8]}"


def other_batch(path: Path, sha256: str) -> str | None:
    """The file name of another batch whose row video is at ``path`` (by its sidecar), else None."""
    try:
        record = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    batch = record.get("batch") if isinstance(record, dict) else None
    if isinstance(batch, dict) and batch.get("sha256") not in (None, sha256):
        return str(batch.get("file", "?"))
    return None


class BatchRun:
    """One pass over a prompt list: :meth:`run` yields the rows each time one changes."""

    def __init__(
        self,
        studio: Studio,
        prompt_file: Path,
        defaults: dict[str, Any] | None = None,
        uploads: list[Path] | None = None,
    ) -> None:
        self.studio = studio
        self.prompt_file = Path(prompt_file)
        self.uploads = [Path(upload) for upload in uploads or ()]
        """Files uploaded with the batch: rows name them by file name (``core.batch_files``)."""
        self._batch_dir: Path | None = None  # named from the file's content when run() reads it
        self.sha256 = ""
        self.defaults = dict(defaults or {})
        self.rows: list[BatchRow] = []
        self.jobs: dict[int, Job] = {}
        self.targets: dict[int, Path] = {}

    @property
    def batch_dir(self) -> Path:
        """The batch folder (reads the file to hash it if :meth:`run` has not yet)."""
        return self._batch_dir or self._name_after(self.prompt_file.read_bytes())

    def _name_after(self, content: bytes) -> Path:
        """Take the batch's hash and folder from the prompt list's bytes; returns the folder."""
        self.sha256 = content_hash(content)
        self._batch_dir = batch_folder(self.studio.settings.outputs_dir, self.prompt_file, content)
        return self._batch_dir

    def _prepare(self, index: int, raw: Any) -> None:
        prompt = str(raw.get("prompt", "")) if isinstance(raw, dict) else ""
        row = BatchRow(index, prompt)
        self.rows.append(row)
        try:
            if not isinstance(raw, dict):
                raise ConfigError(f"expected an object of request fields, got {type(raw).__name__}")
            settings = self.studio.settings
            folder = self.prompt_file.parent.resolve()
            base = folder if folder in {Path(d).resolve() for d in settings.allowed_dirs} else None
            row_fields = resolve_row_files(
                image_row(self.defaults | raw),
                self.uploads,
                settings.outputs_dir,
                settings.allowed_dirs,
                relative_to=base,
            )
            request = parse_request(row_fields)
        except (ConfigError, TypeError, ValueError) as exc:
            row.status, row.error = "bad", str(exc)
            return
        target = row_output_path(self.batch_dir, index, prompt)
        record = finished_record(target, request)
        if record is not None:
            row.status, row.seed, row.time_s = "skipped", record.get("seed"), record.get("time_s")
            row.output = str(target)
            return
        owner = other_batch(target, self.sha256) if target.is_file() else None
        if owner is not None:  # a hash-prefix clash: never replace another batch's video
            row.status = "bad"
            row.error = f"{target.name} belongs to another batch ({owner}); not overwritten"
            return
        try:
            self.studio.check_runnable(request)  # what Studio.submit checks for a single job
        except ConfigError as exc:
            row.status, row.error = "bad", str(exc)
            return
        self.jobs[index] = self.studio.queue.submit(request)
        self.targets[index] = target
        row.status = "queued"

    def _refresh(self) -> None:
        for row in self.rows:
            job = self.jobs.get(row.index)
            if job is not None and row.status in ("queued", "running"):
                row.status = "running" if job.status == JobStatus.RUNNING else row.status

    def _collect(self, row: BatchRow, job: Job) -> None:
        result = job.result or {}
        row.seed, row.time_s = result.get("seed", getattr(job.request, "seed", None)), result.get("time_s")
        if job.status == JobStatus.DONE:
            batch = {"file": self.prompt_file.name, "row": row.index, "sha256": self.sha256}
            move_result(result, self.targets[row.index], batch)
            row.status, row.output = "done", str(self.targets[row.index])
        else:
            error = job_error_message(job.error) if job.status == JobStatus.FAILED else job.error
            row.status, row.error = job.status.value, error or ""
            row.output = str(result.get("path", ""))

    def run(self) -> Iterator[list[BatchRow]]:
        """Queue every new row, then follow them to the end; closing the iterator cancels what is left."""
        content = self.prompt_file.read_bytes()
        raws = load_rows(self.prompt_file, content)  # refuses an empty list before any folder exists
        self._name_after(content)
        for index, raw in enumerate(raws, start=1):
            self._prepare(index, raw)
        write_summary(self.batch_dir, self.rows)
        yield self.rows
        try:
            for row in self.rows:
                job = self.jobs.get(row.index)
                if job is None:
                    continue
                for _ in self.studio.follow(job):
                    self._refresh()
                    yield self.rows
                self._collect(row, job)
                write_summary(self.batch_dir, self.rows)
                yield self.rows
        finally:
            for job in self.jobs.values():
                if not job.finished:
                    job.cancel()


def run_batch(
    studio: Studio,
    prompt_file: Path,
    defaults: dict[str, Any] | None = None,
    uploads: list[Path] | None = None,
) -> BatchRun:
    """Run a whole batch to the end; returns the run (rows, batch folder, jobs submitted)."""
    batch = BatchRun(studio, prompt_file, defaults, uploads)
    for _ in batch.run():
        pass
    return batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a prompt list (txt, CSV or JSON) headless.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--outputs", type=Path, default=Settings.outputs_dir)
    parser.add_argument("--models-dir", type=Path, default=Settings.models_dir)
    parser.add_argument(
        "--model", help="model for rows that name none (default: the one Text to video opens on here)"
    )
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--dev", action="store_true", help="allow the dev (tiny) models")
    parser.add_argument(
        "--allow-dir",
        action="append",
        type=Path,
        default=[],
        metavar="FOLDER",
        help="a folder whose videos rows may name (besides the outputs folder and the prompt list's own)",
    )
    args = parser.parse_args(argv)
    allowed = (args.file.resolve().parent, *(folder.resolve() for folder in args.allow_dir))
    settings = Settings(
        outputs_dir=args.outputs,
        models_dir=args.models_dir,
        offline=args.offline,
        dev=args.dev,
        allowed_dirs=allowed,
    )
    studio = Studio(settings)
    try:
        model = args.model or machine_lineup(settings, studio.hardware).cards("t2v")[0].id
        print(f"rows that name no model use {model}")
        batch = BatchRun(studio, args.file, {"model": model})
        for rows in batch.run():
            done = sum(r.status in ("done", "skipped") for r in rows)
            print(f"\r{done}/{len(rows)} rows finished", end="", flush=True)
        print()
        for row in batch.rows:
            print(f"{row.index:>4}  {row.status:<9} {row.output or row.error}")
        print(f"summary: {batch.batch_dir / 'summary.csv'}")
    finally:
        studio.shutdown()


if __name__ == "__main__":
    main()
