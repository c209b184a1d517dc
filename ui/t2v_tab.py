"""Text to video tab: model, prompt, size, length and sampling settings; Generate, Cancel, video, details."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.requests import snap_frames
from core.studio import Studio
from core.validation import ConfigError
from ui.cache_controls import build_cache_controls, cache_dict_from_controls
from ui.jobs import run_job, wire_job
from ui.memory_panel import build_memory_panel, describe_plan
from ui.queue_panel import build_gpu_choice
from ui.send import SendButtons, job_buttons, job_outputs
from ui.speed_controls import build_speed_controls, speed_dict_from_controls
from weights.registry import ModelCard, cards_for, get_card

DETAIL_KEYS = (
    "model_name",
    "seed",
    "width",
    "height",
    "frames",
    "fps",
    "time_s",
    "peak_memory_gb",
    "device",
    "memory_level",
    "cache",
    "speed",
    "gpu_plan",
    "output",
)


def cache_summary(stats: dict[str, Any]) -> str:
    """`` · teacache reused 12 of 100 forwards, ~8.1 s saved`` for a cached run, "" otherwise."""
    if stats.get("method", "none") == "none":
        return ""
    total = stats["steps_computed"] + stats["steps_reused"]
    saved = stats.get("estimated_seconds_saved") or 0.0
    return f" · {stats['method']} reused {stats['steps_reused']} of {total} forwards, ~{saved:.1f} s saved"


def seconds_label(frames: int, card: ModelCard) -> str:
    return f"{frames} frames = {frames / card.fps:.2f} s at {card.fps} fps"


def model_settings(model_id: str) -> tuple[Any, ...]:
    """Component updates that load a model's defaults into the form."""
    card = get_card(model_id)
    d = card.defaults
    return (
        gr.update(choices=[r.label for r in card.resolutions], value=card.resolution(d.resolution).label),
        gr.update(value=d.frames, info=seconds_label(d.frames, card)),
        gr.update(value=d.steps),
        gr.update(value=d.guidance),
        gr.update(value=d.negative_prompt),
        gr.update(value=card.description),
    )


def resolution_size(card: ModelCard, text: str) -> tuple[int, int]:
    """Width and height from a preset label, a preset name, or ``WIDTHxHEIGHT`` (the API may send any)."""
    for res in card.resolutions:
        if text in (res.label, res.name):
            return res.width, res.height
    match = re.search(r"(\d+)\s*x\s*(\d+)", text or "")
    if not match:
        raise gr.Error(
            f"resolution {text!r}: pick one of {[r.label for r in card.resolutions]} or give WIDTHxHEIGHT"
        )
    return int(match[1]), int(match[2])


def build_t2v_tab(studio: Studio) -> SendButtons:
    """Create the tab inside the caller's ``gr.Tab``; returns the result video and its send buttons."""
    cards = cards_for("t2v", dev=studio.settings.dev)
    first = cards[0]
    d = first.defaults
    most_frames = max(c.max_frames for c in cards)
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown([(c.name, c.id) for c in cards], value=first.id, label="Model")
            about = gr.Markdown(first.description)
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="A cat walks on the grass, realistic")
            negative = gr.Textbox(label="Negative prompt", lines=2, value=d.negative_prompt)
            resolution = gr.Dropdown(
                [r.label for r in first.resolutions],
                value=first.resolution(d.resolution).label,
                label="Resolution",
                allow_custom_value=True,
            )
            frames = gr.Slider(
                1,
                most_frames,
                value=d.frames,
                step=4,
                label="Frames (4k+1)",
                info=seconds_label(d.frames, first),
            )
            with gr.Accordion("Sampling", open=False):
                steps = gr.Slider(1, 200, value=d.steps, step=1, label="Steps")
                guidance = gr.Slider(0, 20, value=d.guidance, step=0.5, label="Guidance scale")
                shift = gr.Number(value=0, label="Flow shift (0 = the resolution's default)")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
            speed, cache_method, cache_threshold = build_cache_controls(cards)
            speed_options = build_speed_controls()
            with gr.Accordion("Memory", open=False):
                memory_level, memory_estimate = build_memory_panel()
                gpu_choice = build_gpu_choice(studio)
            generate, cancel = job_buttons("Generate")
        with gr.Column(scale=1):
            outputs = job_outputs()
    form = [resolution, frames, steps, guidance, negative, about]
    model.change(model_settings, model, form, api_name=False)

    def estimate(model_id: str, resolution_label: str, frame_count: float, level: str) -> str:
        card = get_card(model_id)
        width, height = resolution_size(card, resolution_label)
        try:
            plan = studio.runners[0].plan(card, width, height, snap_frames(frame_count, card), level)
        except ConfigError as exc:
            return f"⚠️ {exc}"
        return describe_plan(plan)

    for trigger in (model, resolution, frames, memory_level):
        trigger.change(estimate, [model, resolution, frames, memory_level], memory_estimate, api_name=False)
    frames.change(
        lambda n, m: gr.update(info=seconds_label(snap_frames(n, get_card(m)), get_card(m))),
        [frames, model],
        frames,
        api_name=False,
    )

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
        multi_gpu: str = "auto",
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[tuple[Any, ...]]:
        card = get_card(model_id)
        width, height = resolution_size(card, resolution_label)
        yield from run_job(
            studio,
            {
                "model": model_id,
                "prompt": prompt_text,
                "negative_prompt": negative_text,
                "width": width,
                "height": height,
                "frames": snap_frames(frame_count, card),
                "steps": step_count,
                "guidance": guidance_scale,
                "flow_shift": flow_shift or None,
                "seed": seed_value,
                "memory_level": level,
                "cache": cache_dict_from_controls(speed_preset, method, threshold),
                "speed": speed_dict_from_controls(attention, compile_choice, turbo),
                "multi_gpu": multi_gpu,
            },
            progress,
            DETAIL_KEYS,
            cache_summary,
        )

    wire_job(
        studio,
        generate,
        cancel,
        run,
        [
            model,
            prompt,
            negative,
            resolution,
            frames,
            steps,
            guidance,
            shift,
            seed,
            memory_level,
            speed,
            cache_method,
            cache_threshold,
            *speed_options.inputs,
            gpu_choice,
        ],
        outputs.wired,
        api_name="t2v",
    )
    return outputs.result
