"""History tab: past results as a table with filters; pick one to play it, see its settings, or delete it."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core.history import delete_result, list_results, rerun_settings
from core.space import for_display
from core.studio import Studio
from core.tasks import request_types
from weights.registry import load_cards

COLUMNS = ["created", "task", "model", "prompt", "seed", "path"]


def history_frame(studio: Studio, task: str | None, model: str | None, text: str | None) -> pd.DataFrame:
    """The filtered results, newest first, one line each (paths inside the outputs folder in a Space)."""
    outputs = studio.settings.outputs_dir
    entries = list_results(outputs, task or None, model or None, text or None)
    frame = pd.DataFrame([e.row() for e in entries], columns=COLUMNS)
    frame["path"] = [for_display(path, studio.space, outputs) for path in frame["path"]]
    return frame


def build_history_tab(studio: Studio) -> None:
    """Create the tab inside the caller's ``gr.Tab``. In a Space there is no Delete: its visitors share
    one outputs folder, so nobody may remove another's results."""
    outputs = studio.settings.outputs_dir
    models = sorted(c.id for c in load_cards().values() if studio.settings.dev or not c.dev)

    def refresh(task: str | None, model: str | None, text: str | None) -> pd.DataFrame:
        return history_frame(studio, task, model, text)

    def pick(table: pd.DataFrame, event: gr.SelectData) -> tuple[str, str]:
        path = str(table.iloc[event.index[0]]["path"])
        return str(outputs / path), path

    def settings_of(path: str | None) -> dict[str, Any]:
        if not path:
            raise gr.Error("Pick a result in the table first.")
        notes: list[str] = []
        try:
            settings = rerun_settings(outputs, outputs / path, notes)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        for note in notes:
            gr.Warning(note)
        return settings

    def delete(path: str | None, task: str | None, model: str | None, text: str | None) -> Any:
        if not path:
            raise gr.Error("Pick a result in the table first.")
        try:
            removed = delete_result(outputs, outputs / path)
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        message = "Deleted " + ", ".join(p.name for p in removed)
        return history_frame(studio, task, model, text), None, "", message

    with gr.Row():
        task = gr.Dropdown([("any task", "")] + [(t, t) for t in request_types()], value="", label="Task")
        model = gr.Dropdown([("any model", "")] + [(m, m) for m in models], value="", label="Model")
        text = gr.Textbox(label="Prompt contains")
        refresh_button = gr.Button("Refresh")
    table = gr.Dataframe(headers=COLUMNS, label="Results (click a row)", interactive=False)
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Selected result", interactive=False)
            selected = gr.Textbox(label="Selected file")
        with gr.Column():
            with gr.Row():
                rerun_button = gr.Button("Rerun settings")
                delete_button = None if studio.space.is_space else gr.Button("Delete", variant="stop")
            request = gr.JSON(label="Request that made it (submit it again to reproduce the video)")
            status = gr.Markdown()
    filters = [task, model, text]
    refresh_button.click(refresh, filters, table, api_name="history")
    gr.on(None, refresh, filters, table, api_name=False)  # on page load and on every filter change
    table.select(pick, table, [video, selected], api_name=False)
    rerun_button.click(settings_of, selected, request, api_name="rerun_settings")
    if delete_button is not None:
        delete_button.click(
            delete, [selected, *filters], [table, video, selected, status], api_name="delete_result"
        )
