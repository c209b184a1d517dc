"""History tab: past results as a table with filters; pick one to play it, see its settings, or delete it."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from core.facade import HISTORY_COLUMNS, ConfigError, Facade


def history_frame(facade: Facade, task: str | None, model: str | None, text: str | None) -> pd.DataFrame:
    """The filtered results, newest first, one line each (paths inside the outputs folder in a Space)."""
    return pd.DataFrame(facade.history(task, model, text), columns=HISTORY_COLUMNS)


class RerunIO(NamedTuple):
    """ "Use these settings again": the events that put a tab's form (``{"tab", "values", "notes"}``) into
    ``form``, for the app to fill that tab after them."""

    form: gr.JSON
    events: list[Any]


def build_history_tab(facade: Facade) -> RerunIO:
    """Create the tab inside the caller's ``gr.Tab``. In a Space there is no Delete: its visitors share
    one outputs folder, so nobody may remove another's results."""

    def refresh(task: str | None, model: str | None, text: str | None) -> pd.DataFrame:
        return history_frame(facade, task, model, text)

    def pick(table: pd.DataFrame, event: gr.SelectData) -> tuple[str, str]:
        path = str(table.iloc[event.index[0]]["path"])
        return facade.result_file(path), path

    def show_gallery(task: str | None, model: str | None, text: str | None, order: str) -> Any:
        items, paths, line = facade.history_gallery(task, model, text, order)
        return items, line, paths

    def pick_shown(paths: list[str], event: gr.SelectData) -> tuple[str, str]:
        return facade.result_file(paths[event.index]), paths[event.index]

    def settings_of(path: str | None) -> dict[str, Any]:
        if not path:
            raise gr.Error("Pick a result in the table first.")
        notes: list[str] = []
        try:
            settings = facade.rerun_settings(path, notes)
        except ConfigError as exc:
            raise gr.Error(str(exc)) from exc
        for note in notes:
            gr.Warning(note)
        return settings

    def delete(path: str | None, task: str | None, model: str | None, text: str | None) -> Any:
        if not path:
            raise gr.Error("Pick a result in the table first.")
        try:
            message = facade.delete_result(path)
        except ConfigError as exc:
            raise gr.Error(str(exc)) from exc
        return history_frame(facade, task, model, text), None, "", message

    with gr.Row():
        tasks = [("any task", "")] + [(t, t) for t in facade.history_tasks()]
        task = gr.Dropdown(tasks, value="", label="Task")
        models = [("any model", "")] + [(m, m) for m in facade.history_models()]
        model = gr.Dropdown(models, value="", label="Model")
        text = gr.Textbox(label="Prompt contains")
        order = gr.Dropdown(list(facade.history_orders), value="newest", label="Sort the gallery")
        refresh_button = gr.Button("Refresh")
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=HISTORY_COLUMNS, label="Results (click a row)", interactive=False)
        with gr.Column(scale=2):
            total = gr.Markdown()
            gallery = gr.Gallery(label="Gallery (click a result)", columns=3, height=420, allow_preview=False)
            gallery_paths = gr.State([])
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Selected result", interactive=False)
            selected = gr.Textbox(label="Selected file")
        with gr.Column():
            with gr.Row():
                rerun_button = gr.Button("Rerun settings")
                use_button = gr.Button("Use these settings again", variant="primary")
                delete_button = None if facade.in_space else gr.Button("Delete", variant="stop")
            request = gr.JSON(label="Request that made it (submit it again to reproduce the video)")
            status = gr.Markdown(label="Message")
            with gr.Accordion("Use the settings of a video made by this app", open=False):
                dropped = gr.File(
                    label="Drop an mp4 made by this app, or the .json beside it",
                    file_types=[".mp4", ".json"],
                    type="filepath",
                )
                use_file = gr.Button("Use its settings")
            form = gr.JSON(visible=False)
    filters = [task, model, text]
    refresh_button.click(refresh, filters, table, api_name="history")
    gr.on(None, refresh, filters, table, api_name=False)  # on page load and on every filter change
    table.select(pick, table, [video, selected], api_name=False)
    shown = [gallery, total, gallery_paths]
    refresh_button.click(show_gallery, [*filters, order], shown, api_name="history_gallery")
    order.change(show_gallery, [*filters, order], shown, api_name=False)
    gr.on(None, show_gallery, [*filters, order], shown, api_name=False)  # page load, filter changes
    gallery.select(pick_shown, gallery_paths, [video, selected], api_name=False)
    rerun_button.click(settings_of, selected, request, api_name="rerun_settings")
    events = [
        use_button.click(facade.memory.rerun_result, selected, form, api_name=False),
        use_file.click(facade.memory.rerun_file, dropped, form, api_name="rerun_form"),
    ]
    if delete_button is not None:
        delete_button.click(
            delete, [selected, *filters], [table, video, selected, status], api_name="delete_result"
        ).then(show_gallery, [*filters, order], shown, api_name=False)
    return RerunIO(form, events)
