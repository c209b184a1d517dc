"""Continue video tab: a clip (or a start image), a prompt and how much to add; Continue, Cancel, the result
and its details. The fields, their help and which apply to the chosen model come from the facade."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.facade import Facade
from ui.jobs import run_job, wire_job, wire_model_form
from ui.send import TabIO, job_buttons, job_outputs

CLIP_INPUTS = ("video_path", "model_id", "overlap_frames")
ESTIMATE_INPUTS = ("model_id", "window_frames", "level", "seconds_to_add", "overlap_frames")


def build_continue_tab(facade: Facade) -> TabIO:
    """Create the tab inside the caller's ``gr.Tab``; returns its input and result (other tabs link to)."""
    p = facade.inputs("continue")
    f: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=1):
            f["model_id"] = gr.Dropdown(**p["model_id"])
            f["about"] = gr.Markdown(**p["about"])
            with gr.Row():
                f["video_path"] = gr.Video(label="Clip to extend", sources=["upload"])
                f["image_path"] = gr.Image(label="…or a start image", type="filepath", sources=["upload"])
            clip_info = gr.Markdown(**p["clip_info"])
            f["prompt_text"] = gr.Textbox(
                **p["prompt_text"], lines=3, placeholder="The camera follows the cat outside"
            )
            f["negative_text"] = gr.Textbox(**p["negative_text"], lines=2)
            f["seconds_to_add"] = gr.Slider(**p["seconds_to_add"])
            f["keep"] = gr.Checkbox(**p["keep"])
            with gr.Column(**p["magi_options"]) as f["magi_options"]:
                f["window"] = gr.Slider(**p["window"])
                f["kv_budget"] = gr.Number(**p["kv_budget"], precision=0)
                gr.Markdown(
                    "MAGI-1 adds whole chunks of 24 frames (1 s): the seconds are rounded up. "
                    + facade.magi_memory_note
                )
            with gr.Accordion("Diffusion forcing", open=False, **p["forcing"]) as f["forcing"]:
                for name in ("overlap_frames", "ar", "block_size", "window_frames"):
                    f[name] = gr.Number(**p[name], precision=0)
                f["noise_level"] = gr.Slider(**p["noise_level"])
            with gr.Accordion("Sampling", open=False):
                f["step_count"] = gr.Slider(**p["step_count"])
                f["guidance_scale"] = gr.Slider(**p["guidance_scale"])
                f["flow_shift"] = gr.Number(**p["flow_shift"])
                f["seed_value"] = gr.Number(**p["seed_value"])
            f["speed_preset"] = gr.Radio(**p["speed_preset"])
            with gr.Accordion("Advanced speed settings", open=False):
                f["cache_threshold"] = gr.Number(**p["cache_threshold"])
            with gr.Accordion("Memory", open=False, **p["memory"]) as f["memory"]:
                f["level"] = gr.Dropdown(**p["level"])
                estimate = gr.Markdown("")
            start, cancel = job_buttons("Continue")
        with gr.Column(scale=1):
            outputs = job_outputs()
    wire_model_form(facade, "continue", f)
    # one start at a time: choosing a clip clears the picture and the other way round
    for chosen, other in (("video_path", "image_path"), ("image_path", "video_path")):
        f[chosen].change(lambda value: None if value else gr.update(), f[chosen], f[other], api_name=False)
    watched_clip = [f[name] for name in CLIP_INPUTS]
    for trigger in watched_clip:
        trigger.change(facade.describe_clip, watched_clip, clip_info, api_name=False)

    def show_estimate(*values: Any) -> str:
        return facade.estimate("continue", dict(zip(ESTIMATE_INPUTS, values, strict=True)))

    # on page load too, so the estimate shows before any field changes
    gr.on(None, show_estimate, [f[name] for name in ESTIMATE_INPUTS], estimate, api_name=False)

    def run(
        model_id: str,
        video_path: str | None,
        prompt_text: str,
        negative_text: str,
        seconds_to_add: float,
        keep: bool,
        overlap_frames: float,
        ar: float,
        block_size: float,
        window_frames: float,
        noise_level: float,
        step_count: float,
        guidance_scale: float,
        flow_shift: float,
        seed_value: float,
        level: str = "auto",
        speed_preset: str = "Off",
        cache_threshold: float | None = None,
        window: float = 0,
        kv_budget: float = 0,
        image_path: str | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[dict[Any, Any]]:
        values = dict(locals())  # the API's parameters by name, as the facade reads them
        yield from run_job(facade, "continue", values, outputs, progress)

    wire_job(facade, start, cancel, run, f, outputs, api_name="continue")
    return TabIO(f["video_path"], outputs.result, f["model_id"])
