"""The queue view: each worker (GPU) with the job it runs, and the jobs waiting, refreshed on a timer.
Layout and wiring only; the rows come from the facade."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.facade import QUEUED_COLUMNS, WORKER_COLUMNS, Facade

REFRESH_S = 2.0


@dataclass
class QueuePanel:
    workers: gr.Dataframe
    queued: gr.Dataframe
    timer: gr.Timer


def build_queue_panel(facade: Facade, every: float = REFRESH_S) -> QueuePanel:
    """The two tables and a timer that refreshes them every ``every`` seconds; call inside gr.Blocks."""
    workers = gr.Dataframe(
        value=facade.worker_rows(), headers=WORKER_COLUMNS, label="Workers", interactive=False, wrap=True
    )
    queued = gr.Dataframe(
        value=facade.queued_rows(), headers=QUEUED_COLUMNS, label="Waiting", interactive=False
    )
    timer = gr.Timer(every)
    timer.tick(
        lambda: (facade.worker_rows(), facade.queued_rows()),
        None,
        [workers, queued],
        api_name=False,
        show_progress="hidden",
    )
    return QueuePanel(workers, queued, timer)
