"""Batch tab: upload a prompt list, pick the model for rows that name none, Run, and watch each row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.batch import SUMMARY_FIELDS, BatchRow, BatchRun
from core.space import for_display
from core.studio import Studio
from core.validation import ConfigError
from weights.registry import cards_for


def rows_frame(rows: list[BatchRow]) -> pd.DataFrame:
    """The progress table: one line per row."""
    return pd.DataFrame(
        [[getattr(row, name) for name in SUMMARY_FIELDS] for row in rows], columns=list(SUMMARY_FIELDS)
    )


def status_line(batch: BatchRun) -> str:
    counts: dict[str, int] = {}
    for row in batch.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{len(batch.rows)} rows: {parts} · folder `{batch.batch_dir}`"


def build_batch_tab(studio: Studio) -> None:
    """Create the tab inside the caller's ``gr.Tab``."""
    cards = cards_for("t2v", dev=studio.settings.dev)

    def shown(value: Any) -> Any:
        return for_display(value, studio.space, studio.settings.outputs_dir)

    def run(prompt_file: str | None, model: str | None) -> Iterator[tuple[pd.DataFrame, str]]:
        if not prompt_file:
            raise gr.Error("Upload a prompt list (.txt, .csv or .json).")
        batch = BatchRun(studio, Path(prompt_file), {"model": model} if model else None)
        try:
            for rows in batch.run():
                yield rows_frame(rows).map(shown), shown(status_line(batch))
        except (ConfigError, ValueError, OSError) as exc:
            raise gr.Error(str(exc), title="Cannot read the prompt list") from exc

    gr.Markdown(
        "One job per row. **.txt**: one prompt a line. **.csv**: a header of request fields "
        "(prompt, seed, width, height, frames, steps, model, ...). **.json**: a list of objects. "
        "Rows already made are skipped, so running the same file again resumes a stopped batch."
    )
    with gr.Row():
        prompt_file = gr.File(label="Prompt list", file_types=[".txt", ".csv", ".json"], type="filepath")
        model = gr.Dropdown(
            [(c.name, c.id) for c in cards],
            value=cards[0].id if cards else None,
            label="Model for rows that name none",
        )
    with gr.Row():
        start = gr.Button("Run", variant="primary")
        stop = gr.Button("Stop")
    status = gr.Markdown()
    table = gr.Dataframe(headers=list(SUMMARY_FIELDS), label="Rows", interactive=False)
    event = start.click(run, [prompt_file, model], [table, status], api_name="batch")
    stop.click(None, cancels=[event], api_name=False)
