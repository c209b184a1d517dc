"""Continue video tab: a clip, a prompt and how much to add; Continue, Cancel, the result and its details."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.continuation import FIELD_HELP
from core.magi.request import context_frames, is_magi_card
from core.studio import Studio
from core.validation import ConfigError
from core.video_input import open_input
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
from ui.send import TabIO, job_buttons, job_outputs
from weights.registry import ModelCard, cards_for, get_card

DETAIL_KEYS = (
    "model_name",
    "seed",
    "input",
    "width",
    "height",
    "fps",
    "input_frames",
    "added_frames",
    "frames",
    "audio",
    "time_s",
    "peak_memory_gb",
    "device",
    "memory_level",
    "cache",
    "output",
)
MAGI_DETAIL_KEYS = (
    "model_name",
    "seed",
    "input",
    "width",
    "height",
    "fps",
    "input_frames",
    "context_frames",
    "chunks",
    "added_frames",
    "frames",
    "audio",
    "window_size",
    "time_s",
    "peak_memory_gb",
    "device",
    "cache",
    "output",
)
SPEEDS = ("Off", "Fast", "Faster")


def cache_from_controls(speed: str | None, threshold: float | None) -> dict[str, Any] | None:
    """The request's ``cache``: an explicit threshold wins over the Speed preset; Off and empty mean none."""
    if threshold is not None and threshold > 0:
        return {"method": "flowcache", "threshold": threshold}
    preset = (speed or "Off").lower()
    return None if preset == "off" else {"preset": preset}


def cache_summary(stats: dict[str, Any]) -> str:
    """`` · flowcache reused 120 of 400 chunk-steps`` for a cached run, "" otherwise."""
    if not stats:
        return ""
    total = stats["chunk_steps_computed"] + stats["chunk_steps_reused"]
    return f" · flowcache reused {stats['chunk_steps_reused']} of {total} chunk-steps"


def describe_input(video_path: str | None, model_id: str, overlap: float) -> str:
    """What the clip becomes for this model, or why it cannot be used."""
    if not video_path:
        return "Upload a clip (mp4, mov, mkv, webm, avi, ts)."
    card = get_card(model_id)
    try:
        if is_magi_card(card):
            video = open_input(video_path, card)
            return video.describe(context_frames(card, video.frames, video.path.name))
        frames = int(overlap) or card.extra.get("overlap_history", 17)
        return open_input(video_path, card, min_frames=frames).describe(frames)
    except ConfigError as exc:
        return f"⚠️ {exc}"


def model_settings(model_id: str) -> tuple[Any, ...]:
    """Component updates that load a model's defaults into the form and show its own options (MAGI-1:
    window and KV budget instead of the diffusion-forcing ones, negative prompt, shift and memory level)."""
    return model_form_updates(get_card(model_id))


def magi_request_data(
    card: ModelCard,
    video_path: str | None,
    prompt: str,
    seconds: float,
    keep_clip: bool,
    steps: float,
    guidance: float,
    seed: float,
    window: float,
    kv_budget: float,
    speed: str,
    threshold: float | None,
) -> dict[str, Any]:
    """The MAGI-1 ``continue`` request for the form's values (seconds rounded up to whole chunks)."""
    return {
        "task": "continue",
        "model": card.id,
        "video": video_path or "",
        "prompt": prompt,
        "seconds": seconds,
        "continuation_only": not keep_clip,
        "steps": int(steps or 0),
        "guidance": guidance,
        "seed": seed,
        "window_size": int(window or 0),
        "kv_budget": int(kv_budget or 0),
        "cache": cache_from_controls(speed, threshold),
    }


def request_data(
    card: ModelCard,
    video_path: str | None,
    prompt: str,
    negative: str,
    seconds: float,
    keep_clip: bool,
    overlap: float,
    ar_step: float,
    block: float,
    window: float,
    noise: float,
    steps: float,
    guidance: float,
    shift: float,
    seed: float,
    level: str,
    speed: str,
    threshold: float | None,
) -> dict[str, Any]:
    """The ``continue`` request for the form's values (0 means the model's default)."""
    return {
        "task": "continue",
        "model": card.id,
        "video": video_path or "",
        "prompt": prompt,
        "negative_prompt": negative,
        "seconds": seconds,
        "continuation_only": not keep_clip,
        "overlap_history": int(overlap),
        "ar_step": int(ar_step),
        "causal_block_size": int(block),
        "base_num_frames": int(window),
        "addnoise_condition": noise,
        "steps": steps,
        "guidance": guidance,
        "shift": shift or None,
        "seed": seed,
        "memory_level": level,
        "cache": cache_from_controls(speed, threshold),
    }


def build_continue_tab(studio: Studio) -> TabIO:
    """Create the tab inside the caller's ``gr.Tab``; returns its input and result (other tabs link to)."""
    cards = cards_for("continue", dev=studio.settings.dev)
    first = cards[0]
    d = first.defaults
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown([(c.name, c.id) for c in cards], value=first.id, label="Model")
            about = gr.Markdown(first.description)
            clip = gr.Video(label="Clip to extend", sources=["upload"])
            clip_info = gr.Markdown(describe_input(None, first.id, 0))
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="The camera follows the cat outside")
            magi = is_magi_card(first)
            negative = gr.Textbox(label="Negative prompt", lines=2, value=d.negative_prompt, visible=not magi)
            seconds = gr.Slider(0.5, 60, value=4, step=0.5, label="Seconds to add")
            keep_clip = gr.Checkbox(value=True, label="Keep the clip before the new part (with its sound)")
            with gr.Column(visible=magi) as magi_options:
                magi_window, magi_kv_budget = build_window_controls(first)
                gr.Markdown(
                    "MAGI-1 adds whole chunks of 24 frames (1 s): the seconds are rounded up. "
                    + MAGI_MEMORY_NOTE
                )
            with gr.Accordion("Diffusion forcing", open=False, visible=not magi) as forcing:
                overlap = gr.Number(
                    value=0,
                    precision=0,
                    label="Overlap frames (0 = model default)",
                    info=FIELD_HELP["overlap_history"],
                )
                ar_step = gr.Number(value=0, precision=0, label="AR step", info=FIELD_HELP["ar_step"])
                block = gr.Number(
                    value=0, precision=0, label="Causal block size", info=FIELD_HELP["causal_block_size"]
                )
                window = gr.Number(
                    value=0,
                    precision=0,
                    label="Window frames (0 = model default)",
                    info=FIELD_HELP["base_num_frames"],
                )
                noise = gr.Slider(
                    0, 60, value=20, step=1, label="Condition noise", info=FIELD_HELP["addnoise_condition"]
                )
            with gr.Accordion("Sampling", open=False):
                steps = gr.Slider(1, 200, value=d.steps, step=1, label="Steps")
                guidance = gr.Slider(0, 20, value=d.guidance, step=0.5, label="Guidance scale")
                shift = gr.Number(
                    value=0, label="Flow shift (0 = the resolution's default)", visible=not magi
                )
                seed = seed_box(-1)
            speed = gr.Radio(
                list(SPEEDS),
                value="Off",
                label="Speed",
                info="Reuse chunks between denoising steps (FlowCache); faster, with some loss of detail.",
            )
            with gr.Accordion("Advanced speed settings", open=False):
                threshold = gr.Number(
                    value=None,
                    minimum=0,
                    label="FlowCache threshold",
                    info="Empty: from the Speed preset. Higher reuses more chunks.",
                )
            with gr.Accordion("Memory", open=False, visible=not magi) as memory:
                memory_level, memory_estimate = build_memory_panel()
            start, cancel = job_buttons("Continue")
        with gr.Column(scale=1):
            outputs = job_outputs()
    form = [steps, guidance, negative, about, forcing, shift, memory, magi_options, magi_window]
    model.change(model_settings, model, form, api_name=False)
    for trigger in (clip, model, overlap):
        trigger.change(describe_input, [clip, model, overlap], clip_info, api_name=False)

    def estimate(
        model_id: str, window_frames: float, level: str, seconds_to_add: float, overlap_frames: float
    ) -> str:
        card = get_card(model_id)
        if is_magi_card(card):
            return MAGI_MEMORY_NOTE
        res = card.resolution(card.defaults.resolution)
        frames = int(window_frames) or card.defaults.frames
        decoded = int(overlap_frames or 0) + round(seconds_to_add * card.fps)  # decoded in one go at the end
        try:
            plan = studio.runners[0].plan(card, res.width, res.height, frames, level, decode_frames=decoded)
            return describe_plan(plan)
        except ConfigError as exc:
            return f"⚠️ {exc}"

    estimate_inputs = [model, window, memory_level, seconds, overlap]
    for trigger in estimate_inputs:
        trigger.change(estimate, estimate_inputs, memory_estimate, api_name=False)

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
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[tuple[Any, ...]]:
        card = get_card(model_id)
        if is_magi_card(card):
            data = magi_request_data(
                card,
                video_path,
                prompt_text,
                seconds_to_add,
                keep,
                step_count,
                guidance_scale,
                seed_value,
                window,
                kv_budget,
                speed_preset,
                cache_threshold,
            )
            updates = run_job(studio, data, progress, MAGI_DETAIL_KEYS, magi_cache_summary)
            yield from with_preview(studio, updates)
            return
        data = request_data(
            card,
            video_path,
            prompt_text,
            negative_text,
            seconds_to_add,
            keep,
            overlap_frames,
            ar,
            block_size,
            window_frames,
            noise_level,
            step_count,
            guidance_scale,
            flow_shift,
            seed_value,
            level,
            speed_preset,
            cache_threshold,
        )
        yield from run_job(studio, data, progress, DETAIL_KEYS, cache_summary)

    wire_job(
        studio,
        start,
        cancel,
        run,
        [
            model,
            clip,
            prompt,
            negative,
            seconds,
            keep_clip,
            overlap,
            ar_step,
            block,
            window,
            noise,
            steps,
            guidance,
            shift,
            seed,
            memory_level,
            speed,
            threshold,
            magi_window,
            magi_kv_budget,
        ],
        outputs.wired,
        api_name="continue",
    )
    return TabIO(clip, outputs.result)
