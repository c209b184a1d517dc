"""Text to video tab: model, prompt, size, length and sampling settings; Generate, Cancel, video, details."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.magi.request import FIELD_HELP as MAGI_HELP
from core.magi.request import chunk_frames, is_magi_card
from core.studio import Studio
from core.tasks.t2v import snap_frames
from core.validation import ConfigError
from ui.cache_controls import SPEEDS, build_cache_controls, cache_dict_from_controls
from ui.form_fields import seed_box
from ui.jobs import run_job, wire_job
from ui.magi_controls import (
    MAGI_MEMORY_NOTE,
    build_window_controls,
    magi_cache_summary,
    model_form_updates,
    with_preview,
)
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


MAGI_DETAIL_KEYS = (
    "model_name",
    "seed",
    "width",
    "height",
    "chunks",
    "frames",
    "fps",
    "steps",
    "window_size",
    "kv_budget",
    "time_s",
    "peak_memory_gb",
    "device",
    "text_encoder_device",
    "cache",
    "output",
)


def cache_summary(stats: dict[str, Any]) -> str:
    """`` · teacache reused 12 of 100 forwards, ~8.1 s saved`` for a cached run, "" otherwise."""
    if stats.get("method", "none") == "none":
        return ""
    total = stats["steps_computed"] + stats["steps_reused"]
    saved = stats.get("estimated_seconds_saved") or 0.0
    return f" · {stats['method']} reused {stats['steps_reused']} of {total} forwards, ~{saved:.1f} s saved"


def seconds_label(frames: float, card: ModelCard) -> str:
    """The slider's note: its frames in seconds, or the model's limit when it asks for more."""
    frames = int(frames)
    if frames > card.max_frames:
        return f"⚠️ {card.name} makes at most {snap_frames(card.max_frames, card)} frames"
    return f"{frames} frames = {frames / card.fps:.2f} s at {card.fps} fps"


def chunks_label(chunks: float, card: ModelCard) -> str:
    frames = int(chunks) * chunk_frames(card)
    return f"{int(chunks)} chunks = {frames} frames = {frames / card.fps:.2f} s at {card.fps} fps"


def default_chunks(card: ModelCard) -> int:
    return max(1, card.defaults.frames // chunk_frames(card)) if is_magi_card(card) else 4


def model_settings(model_id: str) -> tuple[Any, ...]:
    """Component updates that load a model's defaults into the form and show its own options (MAGI-1:
    chunks, window, KV budget and chunk cache instead of frames, negative prompt, shift and step caches)."""
    card = get_card(model_id)
    d = card.defaults
    magi = is_magi_card(card)
    chunks = default_chunks(card)
    return (
        gr.update(choices=[r.label for r in card.resolutions], value=card.resolution(d.resolution).label),
        gr.update(
            value=d.frames,
            info=seconds_label(d.frames, card),
            visible=not magi,
            **({} if magi else {"maximum": snap_frames(card.max_frames, card)}),
        ),
        *model_form_updates(card, gr.update(value=chunks, info=chunks_label(chunks, card) if magi else None)),
    )


def magi_request(
    card: ModelCard,
    prompt: str,
    resolution_label: str,
    steps: float,
    guidance: float,
    seed: float,
    chunks: float,
    window: float,
    kv_budget: float,
    speed: str,
) -> dict[str, Any]:
    """The MAGI-1 ``t2v`` request for the form's values (0 chunks / window: the model's default)."""
    preset = (speed or "Off").lower()
    return {
        "task": "t2v",
        "model": card.id,
        "prompt": prompt,
        "resolution": resolution_label,
        "chunks": int(chunks or 0),
        "steps": int(steps or 0),
        "guidance": guidance,
        "seed": seed,
        "window_size": int(window or 0),
        "kv_budget": int(kv_budget or 0),
        "cache": None if preset == "off" else {"preset": preset},
    }


def resolution_size(card: ModelCard, text: str) -> tuple[int, int]:
    """Width and height from a preset label, a preset name, or ``WIDTHxHEIGHT`` (the API may send any);
    anything else (``-64x48``, ``64x48px``) is refused, not read as the numbers inside it."""
    for res in card.resolutions:
        if text in (res.label, res.name):
            return res.width, res.height
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text if isinstance(text, str) else "")
    if not match:
        raise gr.Error(
            f"resolution {text!r}: pick one of {[r.label for r in card.resolutions]} or give WIDTHxHEIGHT "
            "(two whole numbers, e.g. 832x480)",
            title="Bad request",
        )
    return int(match[1]), int(match[2])


def build_t2v_tab(studio: Studio) -> SendButtons:
    """Create the tab inside the caller's ``gr.Tab``; returns the result video and its send buttons."""
    cards = cards_for("t2v", dev=studio.settings.dev)
    first = cards[0]
    d = first.defaults
    # the API's frames limit: any model's; the slider follows the chosen model (model_settings)
    frames_limit = max(c.max_frames for c in cards)
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown([(c.name, c.id) for c in cards], value=first.id, label="Model")
            about = gr.Markdown(first.description)
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="A cat walks on the grass, realistic")
            magi = is_magi_card(first)
            negative = gr.Textbox(label="Negative prompt", lines=2, value=d.negative_prompt, visible=not magi)
            resolution = gr.Dropdown(
                [r.label for r in first.resolutions],
                value=first.resolution(d.resolution).label,
                label="Resolution",
                allow_custom_value=True,
            )
            frames = gr.Slider(
                1,
                frames_limit,
                value=d.frames,
                step=4,
                label="Frames (4k+1)",
                info=seconds_label(d.frames, first),
                visible=not magi,
            )
            with gr.Column(visible=magi) as magi_options:
                magi_chunks = gr.Slider(
                    1,
                    frames_limit // 24,
                    value=default_chunks(first),
                    step=1,
                    label="Chunks (24 frames each)",
                    info=chunks_label(default_chunks(first), first) if magi else MAGI_HELP["chunks"],
                )
                magi_window, magi_kv_budget = build_window_controls(first)
                magi_speed = gr.Radio(
                    list(SPEEDS),
                    value="Off",
                    label="Speed (chunk cache)",
                    info="Reuse chunk work between steps (FlowCache); faster, with some loss of detail.",
                )
                gr.Markdown(MAGI_MEMORY_NOTE)
            with gr.Accordion("Sampling", open=False):
                steps = gr.Slider(1, 200, value=d.steps, step=1, label="Steps")
                guidance = gr.Slider(0, 20, value=d.guidance, step=0.5, label="Guidance scale")
                shift = gr.Number(
                    value=0, label="Flow shift (0 = the resolution's default)", visible=not magi
                )
                seed = seed_box(-1)
            with gr.Column(visible=not magi) as step_speed:
                speed, cache_method, cache_threshold = build_cache_controls(
                    [c for c in cards if not is_magi_card(c)]
                )
                speed_options = build_speed_controls()
            with gr.Accordion("Memory", open=False, visible=not magi) as memory:
                memory_level, memory_estimate = build_memory_panel()
                gpu_choice = build_gpu_choice(studio)
            generate, cancel = job_buttons("Generate")
        with gr.Column(scale=1):
            outputs = job_outputs()
    form = [resolution, frames, steps, guidance, negative, about, shift, step_speed, memory, magi_options]
    model.change(model_settings, model, [*form, magi_chunks, magi_window], api_name=False)
    magi_chunks.change(
        lambda n, m: gr.update(info=chunks_label(n, get_card(m))),
        [magi_chunks, model],
        magi_chunks,
        api_name=False,
    )

    def estimate(model_id: str, resolution_label: str, frame_count: float, level: str) -> str:
        card = get_card(model_id)
        if is_magi_card(card):
            return MAGI_MEMORY_NOTE
        if int(frame_count) > card.max_frames:
            return seconds_label(frame_count, card)
        try:
            width, height = resolution_size(card, resolution_label)
            plan = studio.runners[0].plan(card, width, height, int(frame_count), level)
        except (ConfigError, gr.Error) as exc:
            return f"⚠️ {exc}"
        return describe_plan(plan)

    for trigger in (model, resolution, frames, memory_level):
        trigger.change(estimate, [model, resolution, frames, memory_level], memory_estimate, api_name=False)
    frames.change(
        lambda n, m: gr.update(info=seconds_label(n, get_card(m))),
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
        chunks: float = 0,
        window: float = 0,
        kv_budget: float = 0,
        chunk_speed: str = "Off",
        multi_gpu: str = "auto",
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[tuple[Any, ...]]:
        card = get_card(model_id)
        if is_magi_card(card):
            data = magi_request(
                card,
                prompt_text,
                resolution_label,
                step_count,
                guidance_scale,
                seed_value,
                chunks,
                window,
                kv_budget,
                chunk_speed,
            )
            updates = run_job(studio, data, progress, MAGI_DETAIL_KEYS, magi_cache_summary)
            yield from with_preview(studio, updates)
            return
        width, height = resolution_size(card, resolution_label)
        yield from run_job(
            studio,
            {
                "model": model_id,
                "prompt": prompt_text,
                "negative_prompt": negative_text,
                "width": width,
                "height": height,
                "frames": frame_count,  # the slider gives 4k+1; anything else is refused with the rule
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
            magi_chunks,
            magi_window,
            magi_kv_budget,
            magi_speed,
            gpu_choice,
        ],
        outputs.wired,
        api_name="t2v",
    )
    return outputs.result
