"""The queue view: each worker (GPU) with the job it runs, the jobs waiting, the jobs finished since the
app started and those a stop interrupted, refreshed on a timer; save the waiting jobs to a file and load
such a file again. Layout and wiring only; the rows and files come from the facade."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.facade import (
    FINISHED_COLUMNS,
    INTERRUPTED_COLUMNS,
    QUEUED_COLUMNS,
    WORKER_COLUMNS,
    ConfigError,
    Facade,
)

REFRESH_S = 2.0


@dataclass
class QueuePanel:
    workers: gr.Dataframe
    queued: gr.Dataframe
    finished: gr.Dataframe
    timer: gr.Timer


def build_queue_panel(facade: Facade, every: float = REFRESH_S) -> QueuePanel:
    """The tables, a timer that refreshes them every ``every`` seconds and the save/load controls; call
    inside gr.Blocks."""
    workers = gr.Dataframe(
        value=facade.worker_rows(), headers=WORKER_COLUMNS, label="Workers", interactive=False, wrap=True
    )
    queued = gr.Dataframe(
        value=facade.queued_rows(), headers=QUEUED_COLUMNS, label="Waiting", interactive=False
    )
    finished = gr.Dataframe(
        value=facade.finished_rows(),
        headers=FINISHED_COLUMNS,
        label="Finished since the app started (a closed page never cancels its job; results are in History)",
        interactive=False,
        wrap=True,
    )
    timer = gr.Timer(every)
    timer.tick(
        lambda: (facade.worker_rows(), facade.queued_rows(), facade.finished_rows()),
        None,
        [workers, queued, finished],
        api_name=False,
        show_progress="hidden",
    )
    build_interrupted(facade)
    build_save_load(facade)
    return QueuePanel(workers, queued, finished, timer)


def build_interrupted(facade: Facade) -> None:
    """The jobs the last stop interrupted (shown only when there are some), with a button to clear them."""
    rows = facade.interrupted_rows()
    with gr.Group(visible=bool(rows)) as group:
        table = gr.Dataframe(
            value=rows,
            headers=INTERRUPTED_COLUMNS,
            label="Interrupted when the app last stopped",
            interactive=False,
            wrap=True,
        )
        clear = gr.Button("Clear this list", size="sm")
    clear.click(
        lambda: (facade.clear_interrupted(), gr.update(visible=False)), None, [table, group], api_name=False
    )


def build_save_load(facade: Facade) -> None:
    """Save the waiting jobs as a file (a batch prompt list) and queue the jobs of such a file."""
    with gr.Row():
        save = gr.Button("Save waiting jobs", size="sm")
        saved = gr.File(label="Saved queue", interactive=False)
        load = gr.File(label="Load a saved queue", file_types=[".json"], type="filepath")
    message = gr.Markdown()

    def loaded(path: str | None) -> str:
        try:
            return facade.load_queue(path)
        except ConfigError as exc:
            return f"⚠️ {exc}"

    save.click(facade.save_queue, None, [saved, message], api_name=False)
    load.upload(loaded, load, message, api_name=False)
