"""The rows the app's tables show: the queue (workers and waiting jobs), history, batch progress and a
comparison's per-frame points, as plain lists the UI puts into its tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from core.batch import SUMMARY_FIELDS, BatchRow, BatchRun
from core.history import list_results
from core.metrics import Comparison
from core.space import SpaceInfo, for_display
from core.studio import Studio

TAB_NAMES = {
    "t2v": "Text to video",
    "continue": "Continue video",
    "upscale": "Upscale",
    "chain": "Long video",
}
WORKER_COLUMNS = ["Worker", "Device", "Job", "Tab", "Progress"]
QUEUED_COLUMNS = ["Position", "Job", "Tab", "Waiting"]
FINISHED_COLUMNS = ["Job", "Tab", "Status", "Result"]
INTERRUPTED_COLUMNS = ["Job", "Tab", "Submitted", "Why"]
RECENT_JOBS = 20
HISTORY_COLUMNS = ["created", "task", "model", "prompt", "seed", "path"]
BATCH_COLUMNS = list(SUMMARY_FIELDS)


def tab_name(task: str | None) -> str:
    return TAB_NAMES.get(task or "", task or "")


def worker_rows(studio: Studio) -> list[list[str]]:
    """One row per worker: name, device, job id, tab and progress ("idle" when it runs nothing)."""
    return [
        [w.name, w.device, w.job_id or "", tab_name(w.task), w.progress if w.job_id else w.state]
        for w in studio.worker_status()
    ]


def queued_rows(studio: Studio, now: float | None = None) -> list[list[str]]:
    """One row per waiting job, in the order they will start."""
    now = time.time() if now is None else now
    return [
        [str(position), job.id, tab_name(getattr(job.request, "task", None)), f"{now - job.created_at:.0f} s"]
        for position, job in enumerate(studio.queued_jobs(), start=1)
    ]


def finished_rows(studio: Studio) -> list[list[str]]:
    """The jobs finished since the app started, newest first: their results stay here (and in History)
    whoever submitted them and whether or not that page is still open."""
    done = [job for job in studio.queue.jobs() if job.finished]
    done.sort(key=lambda job: job.finished_at or 0, reverse=True)
    return [
        [
            job.id,
            tab_name(getattr(job.request, "task", None)),
            job.status.value,
            (job.result or {}).get("output") or job.error or "",
        ]
        for job in done[:RECENT_JOBS]
    ]


def submitted_at(unix_time: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix_time))


def interrupted_rows(studio: Studio) -> list[list[str]]:
    """Jobs the app was running when it last stopped (or could not queue again), with the reason."""
    if studio.store is None:
        return []
    return [
        [job.id, tab_name(job.request.get("task")), submitted_at(job.submitted), job.note]
        for job in studio.store.interrupted()
    ]


def history_rows(
    outputs: Path, space: SpaceInfo, task: str | None, model: str | None, text: str | None
) -> list[list[Any]]:
    """The filtered results, newest first, one line each (paths inside the outputs folder in a Space)."""
    rows = []
    for entry in list_results(outputs, task or None, model or None, text or None):
        row = entry.row()
        row["path"] = for_display(row["path"], space, outputs)
        rows.append([row[name] for name in HISTORY_COLUMNS])
    return rows


def batch_rows(rows: list[BatchRow]) -> list[list[Any]]:
    """The batch's progress table: one line per row."""
    return [[getattr(row, name) for name in SUMMARY_FIELDS] for row in rows]


def batch_status(batch: BatchRun) -> str:
    """``3 rows: 2 done, 1 running · folder `...` ``."""
    counts: dict[str, int] = {}
    for row in batch.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{len(batch.rows)} rows: {parts} · folder `{batch.batch_dir}`"


def comparison_points(result: Comparison) -> dict[str, list[Any]]:
    """Per-frame values in long form (frame, metric, value) for one line plot."""
    rows = [("PSNR dB", v) for v in result.psnr] + [("SSIM x100", 100 * v) for v in result.ssim]
    if result.lpips:
        rows += [("LPIPS x100", 100 * v) for v in result.lpips]
    count = result.frames
    return {
        "frame": [i % count for i in range(len(rows))],
        "metric": [name for name, _ in rows],
        "value": [value for _, value in rows],
    }
