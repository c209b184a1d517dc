"""The queue view: each worker (GPU) with the job it runs, and the jobs waiting, refreshed on a timer.

Layout and wiring only; the data comes from :meth:`core.studio.Studio.worker_status` and
:meth:`core.studio.Studio.queued_jobs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from core.studio import Studio

TAB_NAMES = {
    "t2v": "Text to video",
    "continue": "Continue video",
    "upscale": "Upscale",
    "chain": "Long video",
}
WORKER_COLUMNS = ["Worker", "Device", "Job", "Tab", "Progress"]
QUEUED_COLUMNS = ["Position", "Job", "Tab", "Waiting"]
REFRESH_S = 2.0
GPU_CHOICES = [("Auto", "auto"), ("One GPU", "one"), ("Split over all idle GPUs", "split")]


@dataclass
class QueuePanel:
    workers: gr.Dataframe
    queued: gr.Dataframe
    timer: gr.Timer


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


def build_gpu_choice(studio: Studio) -> gr.Radio:
    """"GPUs for this job" (the request's ``multi_gpu``), shown only when the studio has several GPUs."""
    return gr.Radio(
        choices=GPU_CHOICES,
        value="auto",
        label="GPUs for this job",
        info="Auto: split a big job over idle GPUs, else one GPU. The decision and why are in the details.",
        visible=studio.dispatcher is not None,
    )


def build_queue_panel(studio: Studio, every: float = REFRESH_S) -> QueuePanel:
    """The two tables and a timer that refreshes them every ``every`` seconds; call inside gr.Blocks."""
    workers = gr.Dataframe(
        value=worker_rows(studio), headers=WORKER_COLUMNS, label="Workers", interactive=False, wrap=True
    )
    queued = gr.Dataframe(
        value=queued_rows(studio), headers=QUEUED_COLUMNS, label="Waiting", interactive=False
    )
    timer = gr.Timer(every)
    timer.tick(
        lambda: (worker_rows(studio), queued_rows(studio)),
        None,
        [workers, queued],
        api_name=False,
        show_progress="hidden",
    )
    return QueuePanel(workers, queued, timer)
