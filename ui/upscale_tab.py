"""Upscale tab: input video, model (FlashVSR or a light Real-ESRGAN), scale, variant, size limit, quality,
FlashVSR over 2 GPUs (with several); Upscale, Cancel, video, details."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.facade import Facade
from ui.jobs import run_job, wire_job, wire_model_form
from ui.send import TabIO, job_buttons, job_outputs

PREVIEW_INPUTS = ("video_path", "scale_value", "max_width_value", "model_id", "fit_value")


def build_upscale_tab(facade: Facade) -> TabIO:
    """Create the tab inside the caller's ``gr.Tab``; returns its input and result (other tabs link to)."""
    p = facade.inputs("upscale")
    f: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=1):
            f["video_path"] = gr.Video(label="Input video", sources=["upload"])
            f["model_id"] = gr.Dropdown(**p["model_id"])
            f["about"] = gr.Markdown(**p["about"])
            f["scale_value"] = gr.Radio(**p["scale_value"])
            f["variant_value"] = gr.Dropdown(**p["variant_value"])
            f["max_width_value"] = gr.Number(**p["max_width_value"], precision=0)
            f["fit_value"] = gr.Radio(**p["fit_value"])
            with gr.Accordion("Export", open=False):
                f["quality_value"] = gr.Slider(**p["quality_value"])
                f["seed_value"] = gr.Number(**p["seed_value"])
            f["split_gpus"] = gr.Checkbox(**p["split_gpus"])
            f["interpolation"] = gr.Dropdown(**p["interpolation"])
            preview = gr.Markdown(facade.upscale_size(None, 4, None, None))
            upscale, cancel = job_buttons("Upscale")
        with gr.Column(scale=1):
            outputs = job_outputs()
    watched = [f[name] for name in PREVIEW_INPUTS]
    for trigger in PREVIEW_INPUTS:
        f[trigger].change(facade.upscale_size, watched, preview, api_name=False)
    wire_model_form(facade, "upscale", f)

    def run(
        video_path: str | None,
        model_id: str,
        scale_value: str,
        variant_value: str,
        max_width_value: float | None,
        quality_value: float,
        seed_value: float,
        split_gpus: bool = False,
        fit_value: str = "pad",
        interpolation: str = "",
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[dict[Any, Any]]:
        values = dict(locals())  # the API's parameters by name, as the facade reads them
        yield from run_job(facade, "upscale", values, outputs, progress)

    wire_job(facade, upscale, cancel, run, f, outputs, api_name="upscale")
    return TabIO(f["video_path"], outputs.result)
