"""Wiring shared by every tab: submit a request, stream its progress into gr.Progress, report the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr

from core.errors import job_error_message
from core.jobs import Job, JobStatus
from core.space import for_display
from core.studio import Studio
from core.validation import ConfigError

JOB_ENDPOINTS = "/t2v, /continue, /upscale or /long_video"


def submitting_session(job: Job) -> str | None:
    """The Gradio session whose event submitted ``job`` (None: not submitted through an event), read from
    the submitter's context the job keeps."""
    from gradio.context import LocalContext

    return getattr(job.context.get(LocalContext.request), "session_hash", None)


def submit_or_explain(studio: Studio, data: dict[str, Any]) -> Job:
    """Queue ``data``; a bad request becomes a gr.Error the UI and the API show as a readable message."""
    try:
        return studio.submit(data)
    except ConfigError as exc:
        raise gr.Error(str(exc), title="Bad request") from exc


def cancel_job(studio: Studio, job_id: str, session: str | None) -> str:
    """Cancel exactly the job ``job_id`` for the API's ``/cancel_job``; only the session that submitted it
    may. A queued job is dropped, a running one stops at its next step (its own call then returns what a
    cancel leaves, e.g. a partial video). Unknown ids raise gr.Error; a finished job is a message."""
    job_id = (job_id or "").strip()
    if not job_id:
        raise gr.Error(
            f"job_id is empty: pass details['job_id'] of a {JOB_ENDPOINTS} call", title="Bad request"
        )
    job = studio.queue.get(job_id)
    if job is None:
        raise gr.Error(
            f"no job {job_id!r}; job ids are in details['job_id'] of {JOB_ENDPOINTS}", title="Unknown job"
        )
    owner = submitting_session(job)
    if owner is not None and owner != session:
        raise gr.Error(
            f"{job_id} was submitted by another session; only its own client can cancel it", title="Not yours"
        )
    if job.finished or not studio.cancel(job_id):
        return f"{job_id} has already finished ({job.status.value}); nothing to cancel."
    if job.status == JobStatus.CANCELLED:
        return f"Cancelled {job_id} before it started."
    return f"Cancelling {job_id}: it stops at its next step; its own call returns the cancelled status."


def track(studio: Studio, job: Job, progress: gr.Progress) -> Iterator[str]:
    """Follow ``job``: move the progress bar and yield a one-line status each time it changes."""
    try:
        for snapshot in studio.follow(job):
            if snapshot.status == JobStatus.QUEUED:
                ahead = studio.queue.position(snapshot)
                text = f"Queued: {ahead} job(s) ahead" if ahead else "Queued: starting next"
                progress(0, desc=text)
            else:
                p = snapshot.progress
                text = p.describe()
                progress((p.step, p.total) if p.total else None, desc=text)
            yield text
    finally:
        if not job.finished:
            job.cancel()


def finish_message(job: Job) -> str:
    """Status line for a finished job; raises gr.Error for a failed one so the API sees the error."""
    if job.status == JobStatus.FAILED:
        raise gr.Error(job_error_message(job.error), title="Generation failed")
    if job.status == JobStatus.CANCELLED:
        partial = (job.result or {}).get("path")
        where = f" Partial result kept: {partial}" if partial else ""
        return f"Cancelled during {job.progress.stage}.{where}"
    record = job.result or {}
    return f"Done in {record.get('time_s', 0):.1f} s · seed {record.get('seed')} · {record.get('output', '')}"


def run_job(
    studio: Studio,
    data: dict[str, Any],
    progress: gr.Progress,
    detail_keys: Sequence[str],
    cache_summary: Callable[[dict[str, Any]], str] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Submit ``data`` and stream ``(job id, result video, details, status)`` for a tab's outputs: the job
    id while it runs (and ``{"job_id": ...}`` as the details, for an API client's ``/cancel_job``), then
    the video, the job id and the record's ``detail_keys`` as the details, and the finish message (with
    ``cache_summary`` of the record's cache stats appended, when given)."""
    job = submit_or_explain(studio, data)
    yield job.id, gr.skip(), {"job_id": job.id}, "Queued."
    for text in track(studio, job, progress):
        yield job.id, gr.skip(), gr.skip(), text
    message = finish_message(job)
    record = job.result or {}
    if cache_summary is not None:
        message += cache_summary(record.get("cache") or {})
    details = {"job_id": job.id} | {k: record[k] for k in detail_keys if k in record}
    details, message = for_display((details, message), studio.space, studio.settings.outputs_dir)
    yield None, record.get("path"), details, message


def wire_job(
    studio: Studio,
    start: gr.Button,
    cancel: gr.Button,
    run: Callable[..., Iterator[tuple[Any, ...]]],
    inputs: list[gr.components.Component],
    outputs: tuple[gr.State, gr.Video, gr.JSON, gr.Markdown],
    api_name: str,
) -> None:
    """``start`` streams ``run`` (a :func:`run_job` generator) into ``outputs`` (job id, video, details,
    status) as the API endpoint ``api_name``; ``cancel`` cancels the job whose id is in the state."""
    job_id, _, _, status = outputs
    start.click(run, inputs, list(outputs), api_name=api_name, concurrency_limit=16)
    cancel.click(
        lambda jid: "Cancelling…" if studio.cancel(jid) else "Nothing to cancel.",
        job_id,
        status,
        api_name=False,
    )
