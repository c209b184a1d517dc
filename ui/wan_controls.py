"""The Wan-family controls Text to video and Image to video share: sampling, fast mode and LoRAs, the step
speed settings. Each adds its components to the tab's field dict ``f`` from the facade's properties ``p``;
call inside the tab's layout."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.facade import LoraFiles, add_to_box


def sampling_controls(p: dict[str, dict[str, Any]], f: dict[str, Any]) -> None:
    with gr.Accordion("Sampling", open=False):
        f["step_count"] = gr.Slider(**p["step_count"])
        f["guidance_scale"] = gr.Slider(**p["guidance_scale"])
        f["flow_shift"] = gr.Number(**p["flow_shift"])
        f["seed_value"] = gr.Number(**p["seed_value"])


def fast_mode_controls(p: dict[str, dict[str, Any]], f: dict[str, Any], loras: LoraFiles) -> None:
    """Few-step mode, first-step CFG, the LoRAs box and a pick from the loras folder that adds to it (its
    list read again each time it opens, so files downloaded meanwhile show)."""
    with gr.Accordion("Fast mode and LoRAs", open=False):
        f["few_step"] = gr.Checkbox(**p["few_step"])
        f["first_step_guidance"] = gr.Number(**p["first_step_guidance"])
        with gr.Row():
            f["loras_text"] = gr.Textbox(**p["loras_text"], scale=3)
            pick = gr.Dropdown(
                loras.choices(),
                value=None,
                label="Add from the loras folder",
                scale=1,
                allow_custom_value=False,
            )
    pick.focus(lambda: gr.update(choices=loras.choices()), None, pick, api_name=False)
    pick.select(add_to_box, [f["loras_text"], pick], f["loras_text"], api_name=False).then(
        lambda: None, None, pick, api_name=False
    )


def step_speed_controls(p: dict[str, dict[str, Any]], f: dict[str, Any]) -> None:
    """The step cache preset, its method and threshold, and the speed options."""
    f["speed_preset"] = gr.Radio(**p["speed_preset"])
    with gr.Accordion("Advanced speed settings", open=False):
        f["method"] = gr.Dropdown(**p["method"])
        f["threshold"] = gr.Number(**p["threshold"])
    with gr.Accordion("Speed options", open=False):
        f["attention"] = gr.Dropdown(**p["attention"])
        f["compile_choice"] = gr.Radio(**p["compile_choice"])
        f["turbo"] = gr.Checkbox(**p["turbo"])
