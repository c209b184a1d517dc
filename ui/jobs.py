"""Wiring shared by every job tab: submit the tab's values through the facade, stream the job's progress
into gr.Progress and the tab's outputs (updates keyed by component), report the end."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import gradio as gr
from gradio.context import Context

from core.facade import ConfigError, Facade, Job, JobFailed, JobStatus
from ui.send import JobOutputs

JOB_ENDPOINTS = "/t2v, /i2v, /continue, /upscale or /long_video"
MAX_JOB_ID_CHARS = 64
"""Job ids are short ("job-12"): a longer one is refused without being looked up or echoed."""


class JobForm(NamedTuple):
    """A job tab as ``ui.remember`` fills it: its fields by name, its start button, its API inputs."""

    fields: Mapping[str, Any]
    start: gr.Button
    inputs: dict[str, Any]


JOB_FORMS: weakref.WeakKeyDictionary[Any, dict[str, JobForm]] = weakref.WeakKeyDictionary()
"""Each app's job tabs by API name, as ``wire_job`` wired them (read by ``ui.remember``)."""


def submitting_session(job: Job) -> str | None:
    """The Gradio session whose event submitted ``job`` (None: not submitted through an event), read from
    the submitter's context the job keeps."""
    from gradio.context import LocalContext

    return getattr(job.context.get(LocalContext.request), "session_hash", None)


def cancel_job(facade: Facade, job_id: str, session: str | None) -> str:
    """Cancel exactly the job ``job_id`` for the API's ``/cancel_job``; only the session that submitted it
    may. A queued job is dropped, a running one stops at its next step (its own call then returns what a
    cancel leaves, e.g. a partial video). Unknown ids raise gr.Error; a finished job is a message."""
    job_id = (job_id or "").strip()
    if not job_id:
        raise gr.Error(
            f"job_id is empty: pass details['job_id'] of a {JOB_ENDPOINTS} call", title="Bad request"
        )
    job = facade.job(job_id) if len(job_id) <= MAX_JOB_ID_CHARS else None
    if job is None:
        shown = repr(job_id) if len(job_id) <= MAX_JOB_ID_CHARS else f"of {len(job_id)} characters"
        raise gr.Error(
            f"no job {shown}; job ids are in details['job_id'] of {JOB_ENDPOINTS}", title="Unknown job"
        )
    owner = submitting_session(job)
    if owner is not None and owner != session:
        raise gr.Error(
            f"{job_id} was submitted by another session; only its own client can cancel it", title="Not yours"
        )
    if job.finished or not facade.cancel(job_id):
        return f"{job_id} has already finished ({job.status.value}); nothing to cancel."
    if job.status == JobStatus.CANCELLED:
        return f"Cancelled {job_id} before it started."
    return f"Cancelling {job_id}: it stops at its next step; its own call returns the cancelled status."


def track(facade: Facade, job: Job, progress: gr.Progress) -> Iterator[str]:
    """Follow ``job``: move the progress bar and yield a one-line status each time it changes. A page that
    closes or loses its connection stops following; the job runs on (only Cancel stops it), and its result
    lands in History and in the System panel's finished jobs."""
    for snapshot in facade.follow(job):
        if snapshot.status == JobStatus.QUEUED:
            ahead = facade.position(snapshot)
            text = f"Queued: {ahead} job(s) ahead" if ahead else "Queued: starting next"
            progress(0, desc=text)
        else:
            p = snapshot.progress
            text = p.describe()
            progress((p.step, p.total) if p.total else None, desc=text)
        yield text


def run_job(
    facade: Facade, task: str, values: Mapping[str, Any], out: JobOutputs, progress: gr.Progress
) -> Iterator[dict[Any, Any]]:
    """Submit the tab ``task``'s ``values`` and stream updates of ``out``: the job id while it runs (and
    ``{"job_id": ...}`` as the details, for an API client's ``/cancel_job``) with the running job's
    preview when it writes one, then the video, the details and the finish message."""
    try:
        data = facade.request(task, values)
        job = facade.submit(data)
    except ConfigError as exc:
        raise gr.Error(str(exc), title="Bad request") from exc
    yield {out.job_id: job.id, out.details: {"job_id": job.id}, out.status: "Queued."}
    shown = None
    for text in track(facade, job, progress):
        # the stage in the details too, so an API client sees what a long preparation is doing
        update = {out.job_id: job.id, out.status: text, out.details: {"job_id": job.id, "stage": text}}
        preview = facade.with_preview(job.id, shown)
        if preview:
            shown = update[out.result.video] = preview
        yield update
    try:
        details, message = facade.outcome(task, data, job)
    except JobFailed as exc:  # the status line says so too, never the last stage it reached
        yield {
            out.job_id: None,
            out.status: f"Failed: {exc}",
            out.details: {"job_id": job.id, "error": str(exc)},
        }
        raise gr.Error(str(exc), title="Generation failed") from exc
    video = (job.result or {}).get("path")
    yield {out.job_id: None, out.result.video: video, out.details: details, out.status: message}


def api_parameters(fn: Callable[..., Any]) -> list[str]:
    """The API parameter names of an endpoint function, in order (Gradio's injected progress left out)."""
    return [name for name, p in inspect.signature(fn).parameters.items() if name != "progress"]


def wire_job(
    facade: Facade,
    start: gr.Button,
    cancel: gr.Button,
    run: Callable[..., Iterator[dict[Any, Any]]],
    fields: Mapping[str, gr.components.Component],
    out: JobOutputs,
    api_name: str,
) -> None:
    """``start`` streams ``run`` into ``out`` as the API endpoint ``api_name``, its inputs the ``fields``
    named by ``run``'s parameters (the endpoint's names and order); ``cancel`` cancels the job whose id
    is in the state."""
    inputs = [fields[name] for name in api_parameters(run)]
    if Context.root_block is not None:  # inside an app's Blocks, as always but in a bare test
        form = JobForm(fields, start, dict(zip(api_parameters(run), inputs, strict=True)))
        JOB_FORMS.setdefault(Context.root_block, {})[api_name] = form
    start.click(run, inputs, list(out.wired), api_name=api_name, concurrency_limit=16)
    cancel.click(
        lambda jid: "Cancelling…" if facade.cancel(jid) else "Nothing to cancel.",
        out.job_id,
        out.status,
        api_name=False,
    )


def load_form(fields: Mapping[str, Any], props: Mapping[str, dict[str, Any]]) -> dict[Any, Any]:
    """Component updates keyed by component, for the facade's field properties keyed by name."""
    return {fields[name]: gr.update(**p) for name, p in props.items() if name in fields}


def wire_model_form(facade: Facade, task: str, fields: Mapping[str, Any]) -> None:
    """Choosing another model loads its form (the facade's fields for the tab ``task``) into ``fields``;
    every model of a tab changes the same fields, so the first one's names are the outputs. Only the
    user's choice does: a model put there by remembered settings or a rerun comes with its form, and the
    page's load brings the opening model's form (``ui.remember``)."""
    model = fields["model_id"]
    changing = [fields[name] for name in facade.form(task, model.value) if name in fields]
    model.input(lambda m: load_form(fields, facade.form(task, m)), model, changing, api_name=False)
