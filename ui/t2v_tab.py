"""Text to video tab: model, prompt, size, length and sampling settings; Generate, Cancel, video, details.
The fields, their limits and which apply to the chosen model come from the facade."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.facade import Facade
from ui.jobs import load_form, run_job, wire_job, wire_model_form
from ui.send import SendButtons, job_buttons, job_outputs
from ui.wan_controls import fast_mode_controls, sampling_controls, step_speed_controls

ESTIMATE_INPUTS = ("model_id", "resolution_label", "frame_count", "level")


def build_t2v_tab(facade: Facade) -> SendButtons:
    """Create the tab inside the caller's ``gr.Tab``; returns the result video and its send buttons."""
    p = facade.inputs("t2v")
    f: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=1):
            f["model_id"] = gr.Dropdown(**p["model_id"])
            f["about"] = gr.Markdown(**p["about"])
            f["prompt_text"] = gr.Textbox(
                **p["prompt_text"], lines=3, placeholder="A cat walks on the grass, realistic"
            )
            f["negative_text"] = gr.Textbox(**p["negative_text"], lines=2)
            f["resolution_label"] = gr.Dropdown(**p["resolution_label"], allow_custom_value=True)
            f["frame_count"] = gr.Slider(**p["frame_count"])
            with gr.Column(**p["magi_options"]) as f["magi_options"]:
                f["chunks"] = gr.Slider(**p["chunks"])
                f["window"] = gr.Slider(**p["window"])
                f["kv_budget"] = gr.Number(**p["kv_budget"], precision=0)
                f["chunk_speed"] = gr.Radio(**p["chunk_speed"])
                gr.Markdown(facade.magi_memory_note)
            sampling_controls(p, f)
            fast_mode_controls(p, f, facade.loras)
            with gr.Column(**p["step_speed"]) as f["step_speed"]:
                step_speed_controls(p, f)
            with gr.Accordion("Memory", open=False, **p["memory"]) as f["memory"]:
                f["level"] = gr.Dropdown(**p["level"])
                estimate = gr.Markdown("")
                f["multi_gpu"] = gr.Radio(**p["multi_gpu"])
            generate, cancel = job_buttons("Generate")
        with gr.Column(scale=1):
            outputs = job_outputs()
    wire_model_form(facade, "t2v", f)
    f["chunks"].change(
        lambda n, m: load_form(f, facade.chunks_note(n, m)),
        [f["chunks"], f["model_id"]],
        f["chunks"],
        api_name=False,
    )
    f["frame_count"].change(
        lambda n, m: load_form(f, facade.frames_note(n, m)),
        [f["frame_count"], f["model_id"]],
        f["frame_count"],
        api_name=False,
    )

    def show_estimate(*values: Any) -> str:
        return facade.estimate("t2v", dict(zip(ESTIMATE_INPUTS, values, strict=True)))

    # on page load too, so the estimate shows before any field changes
    gr.on(None, show_estimate, [f[name] for name in ESTIMATE_INPUTS], estimate, api_name=False)

    def run(
        model_id: str,
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
        chunks: float = 0,
        window: float = 0,
        kv_budget: float = 0,
        chunk_speed: str = "Off",
        multi_gpu: str = "auto",
        few_step: bool = False,
        first_step_guidance: float | None = None,
        loras_text: str = "",
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[dict[Any, Any]]:
        values = dict(locals())  # the API's parameters by name, as the facade reads them
        yield from run_job(facade, "t2v", values, outputs, progress)

    wire_job(facade, generate, cancel, run, f, outputs, api_name="t2v")
    return outputs.result
