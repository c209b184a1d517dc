"""A tab's result video with buttons that send it on to the Continue, Upscale and Image to video tabs."""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr


class SendButtons(NamedTuple):
    """A result video and the buttons that send it to the Continue and Upscale tabs, and its last frame
    to Image to video."""

    video: gr.Video
    to_continue: gr.Button
    to_upscale: gr.Button
    to_image: gr.Button


def result_video() -> SendButtons:
    """The "Result" player with "Continue this", "Upscale this" and "Last frame → Image to video" under it
    (inside the current column)."""
    video = gr.Video(label="Result", interactive=False)
    with gr.Row():
        to_continue = gr.Button("Continue this")
        to_upscale = gr.Button("Upscale this")
        to_image = gr.Button("Last frame → Image to video")
    return SendButtons(video, to_continue, to_upscale, to_image)


class TabIO(NamedTuple):
    """What other tabs connect to: the tab's input video and its result with send buttons."""

    source: gr.Video
    result: SendButtons
    model: gr.Dropdown | None = None
    """The tab's model choice ("Continue this" opens a model that suits the clip)."""


class JobOutputs(NamedTuple):
    """A tab's output column: status line, result with send buttons, details, and the running job's id."""

    job_id: gr.State
    status: gr.Markdown
    result: SendButtons
    details: gr.JSON

    @property
    def wired(self) -> tuple[gr.State, gr.Video, gr.JSON, gr.Markdown]:
        """The outputs in the order ``ui.jobs.wire_job`` streams into."""
        return self.job_id, self.result.video, self.details, self.status


def job_buttons(label: str) -> tuple[gr.Button, gr.Button]:
    """The start button called ``label`` beside Cancel."""
    with gr.Row():
        return gr.Button(label, variant="primary"), gr.Button("Cancel", variant="stop")


def job_outputs() -> JobOutputs:
    """The output column's components, in their on-screen order (inside the current column)."""
    status = gr.Markdown("Ready.", label="Status")
    result = result_video()
    details = gr.JSON(label="Details")
    return JobOutputs(gr.State(None), status, result, details)
