"""Image to video tab: a start image (and an end image for the models that take one), the picture as the
model will see it, then Text to video's prompt, size, length, sampling, speed and memory settings. The
fields, their limits and what applies to the chosen model come from the facade."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import gradio as gr

from core.facade import Facade
from ui.jobs import load_form, run_job, wire_job, wire_model_form
from ui.send import SendButtons, job_buttons, job_outputs
from ui.wan_controls import fast_mode_controls, sampling_controls, step_speed_controls

ESTIMATE_INPUTS = ("model_id", "resolution_label", "frame_count", "level", "image_path")
PREVIEW_INPUTS = ("image_path", "model_id", "resolution_label")


class ImageTabIO(NamedTuple):
    """What other tabs connect to: the start image and the tab's result with its send buttons."""

    start_image: gr.Image
    result: SendButtons


def build_i2v_tab(facade: Facade) -> ImageTabIO:
    """Create the tab inside the caller's ``gr.Tab``."""
    p = facade.inputs("i2v")
    f: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=1):
            f["model_id"] = gr.Dropdown(**p["model_id"])
            f["about"] = gr.Markdown(**p["about"])
            with gr.Row():
                sources = ["upload", "clipboard"]
                # image_mode None: the file as uploaded (EXIF, alpha, 16 bits, CMYK are core.image_input's)
                kept = {"type": "filepath", "image_mode": None}
                f["image_path"] = gr.Image(**p["image_path"], **kept, sources=sources)
                f["end_image_path"] = gr.Image(**p["end_image_path"], **kept, sources=["upload"])
            f["end_image_note"] = gr.Markdown(**p["end_image_note"])
            with gr.Accordion("Start from a frame of a video", open=False):
                frame_video = gr.Video(label="Video", sources=["upload"])
                frame_index = gr.Number(value=-1, precision=0, label="Frame (-1 = the last, 0 = the first)")
                take_frame = gr.Button("Use this frame as the start image")
            f["prompt_text"] = gr.Textbox(**p["prompt_text"], lines=3, placeholder="The cat turns its head")
            f["negative_text"] = gr.Textbox(**p["negative_text"], lines=2)
            f["resolution_label"] = gr.Dropdown(**p["resolution_label"], allow_custom_value=True)
            preview = gr.Image(label="What the model starts from", interactive=False, height=200)
            fit_note = gr.Markdown(**p["fit_help"])
            f["frame_count"] = gr.Slider(**p["frame_count"])
            sampling_controls(p, f)
            fast_mode_controls(p, f, facade.loras)
            step_speed_controls(p, f)
            with gr.Accordion("Memory", open=False):
                f["level"] = gr.Dropdown(**p["level"])
                estimate = gr.Markdown("")
                f["multi_gpu"] = gr.Radio(**p["multi_gpu"])
            generate, cancel = job_buttons("Generate")
        with gr.Column(scale=1):
            outputs = job_outputs()
    wire_model_form(facade, "i2v", f)
    f["frame_count"].change(
        lambda n, m: load_form(f, facade.frames_note(n, m)),
        [f["frame_count"], f["model_id"]],
        f["frame_count"],
        api_name=False,
    )

    def show_estimate(*values: Any) -> str:
        return facade.estimate("i2v", dict(zip(ESTIMATE_INPUTS, values, strict=True)))

    watched = [f[name] for name in ESTIMATE_INPUTS]
    for trigger in watched:
        trigger.change(show_estimate, watched, estimate, api_name=False)
    shown = [f[name] for name in PREVIEW_INPUTS]
    for trigger in shown:
        trigger.change(facade.crop_preview, shown, [preview, fit_note], api_name=False)
    take_frame.click(
        lambda video, index: facade.frame_as_image(video, -1 if index is None else int(index)),
        [frame_video, frame_index],
        f["image_path"],
        api_name=False,
    )

    def run(
        model_id: str,
        image_path: str,
        end_image_path: str | None,
        prompt_text: str,
        negative_text: str,
        resolution_label: str,
        frame_count: float,
        step_count: float,
        guidance_scale: float,
        flow_shift: float,
        seed_value: float,
        level: str = "auto",
        speed_preset: str = "Off",
        method: str = "auto",
        threshold: float | None = None,
        attention: str = "auto",
        compile_choice: str = "auto",
        turbo: bool = False,
        few_step: bool = False,
        first_step_guidance: float | None = None,
        loras_text: str = "",
        multi_gpu: str = "auto",
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[dict[Any, Any]]:
        values = dict(locals())  # the API's parameters by name, as the facade reads them
        yield from run_job(facade, "i2v", values, outputs, progress)

    wire_job(facade, generate, cancel, run, f, outputs, api_name="i2v")
    return ImageTabIO(f["image_path"], outputs.result)
