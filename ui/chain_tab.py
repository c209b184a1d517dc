"""Long video tab: text to video, then N continuations, then an optional upscale, as one job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.facade import Facade
from ui.jobs import run_job, wire_job, wire_model_form
from ui.send import SendButtons, job_buttons, job_outputs


def build_chain_tab(facade: Facade) -> SendButtons:
    """Create the tab inside the caller's ``gr.Tab``; returns its result with the send buttons."""
    p = facade.inputs("long_video")
    f: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("Makes a clip, extends it again and again, and optionally upscales it: one job.")
            f["model_id"] = gr.Dropdown(**p["model_id"])
            f["prompt_text"] = gr.Textbox(**p["prompt_text"], lines=3)
            f["resolution_label"] = gr.Dropdown(**p["resolution_label"], allow_custom_value=True)
            f["frame_count"] = gr.Slider(**p["frame_count"])
            f["step_count"] = gr.Slider(**p["step_count"])
            f["seed_value"] = gr.Number(**p["seed_value"])
            f["continue_id"] = gr.Dropdown(**p["continue_id"])
            f["continuation_count"] = gr.Slider(**p["continuation_count"])
            f["seconds_each"] = gr.Slider(**p["seconds_each"])
            f["upscale_id"] = gr.Dropdown(**p["upscale_id"])
            f["factor"] = gr.Radio(**p["factor"])
            f["part_prompts"] = gr.Textbox(**p["part_prompts"], lines=3)
            f["part_seeds"] = gr.Textbox(**p["part_seeds"])
            f["interpolation"] = gr.Dropdown(**p["interpolation"])
            picture = {"type": "filepath", "image_mode": None, "sources": ["upload"]}  # as uploaded
            f["start_image"] = gr.Image(**p["start_image"], **picture)
            start, cancel = job_buttons("Make long video")
        with gr.Column(scale=1):
            outputs = job_outputs()

    def run(
        model_id: str,
        prompt_text: str,
        resolution_label: str,
        frame_count: float,
        step_count: float,
        seed_value: float,
        continue_id: str,
        continuation_count: float,
        seconds_each: float,
        upscale_id: str,
        factor: str,
        part_prompts: str = "",
        interpolation: str = "",
        start_image: str | None = None,
        part_seeds: str = "",
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress
    ) -> Iterator[dict[Any, Any]]:
        values = dict(locals())  # the API's parameters by name, as the facade reads them
        yield from run_job(facade, "long_video", values, outputs, progress)

    wire_model_form(facade, "long_video", f)
    wire_job(facade, start, cancel, run, f, outputs, api_name="long_video")
    return outputs.result
