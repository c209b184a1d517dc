"""Batch tab: upload a prompt list, pick the model for rows that name none, Run, and watch each row."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr
import pandas as pd

from core.facade import BATCH_COLUMNS, ConfigError, Facade


def build_batch_tab(facade: Facade) -> None:
    """Create the tab inside the caller's ``gr.Tab``."""
    models = facade.models("t2v")

    def run(
        prompt_file: str | None, model: str | None, files: list[str] | None = None
    ) -> Iterator[tuple[pd.DataFrame, str]]:
        if not prompt_file:
            raise gr.Error("Upload a prompt list (.txt, .csv or .json).")
        try:
            for rows, status in facade.batch(prompt_file, model, files):
                yield pd.DataFrame(rows, columns=BATCH_COLUMNS), status
        except ConfigError as exc:
            raise gr.Error(str(exc), title="Cannot read the prompt list") from exc

    gr.Markdown(
        "One job per row. **.txt**: one prompt a line. **.csv**: a header of request fields "
        "(prompt, seed, width, height, frames, steps, model, ...). **.json**: a list of objects. "
        "Rows already made are skipped, so running the same file again resumes a stopped batch. "
        "A row's video is a file uploaded below (by its name) or one in the outputs folder."
    )
    with gr.Row():
        prompt_file = gr.File(label="Prompt list", file_types=[".txt", ".csv", ".json"], type="filepath")
        model = gr.Dropdown(
            models, value=models[0][1] if models else None, label="Model for rows that name none"
        )
    files = gr.File(label="Files the rows name (optional)", file_count="multiple", type="filepath")
    with gr.Row():
        start = gr.Button("Run", variant="primary")
        stop = gr.Button("Stop")
    status = gr.Markdown(label="Status")
    table = gr.Dataframe(headers=BATCH_COLUMNS, label="Rows", interactive=False)
    event = start.click(run, [prompt_file, model, files], [table, status], api_name="batch")
    stop.click(None, cancels=[event], api_name=False)
