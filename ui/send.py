"""A tab's result video with buttons that send it on to the Continue and Upscale tabs."""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr


class SendButtons(NamedTuple):
    """A result video and the buttons that send it to the Continue and Upscale tabs."""

    video: gr.Video
    to_continue: gr.Button
    to_upscale: gr.Button


def result_video() -> SendButtons:
    """The "Result" player with "Continue this" and "Upscale this" under it (inside the current column)."""
    video = gr.Video(label="Result", interactive=False)
    with gr.Row():
        to_continue = gr.Button("Continue this")
        to_upscale = gr.Button("Upscale this")
    return SendButtons(video, to_continue, to_upscale)


class TabIO(NamedTuple):
    """What other tabs connect to: the tab's input video and its result with send buttons."""

    source: gr.Video
    result: SendButtons
