"""Long video tab: text to video, then N continuations, then an optional upscale, as one job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.magi.request import chunk_frames, is_magi_card
from core.studio import Studio
from ui.form_fields import choice_number, number_choice, seed_box, whole
from ui.jobs import run_job, wire_job
from ui.send import SendButtons, job_buttons, job_outputs
from ui.t2v_tab import resolution_size
from weights.registry import cards_for, get_card

DETAIL_KEYS = ("seed", "frames", "width", "height", "fps", "time_s", "parts", "job_folder", "output")


def first_model_settings(model_id: str, continue_ids: list[str]) -> tuple[Any, ...]:
    """Updates for resolution, frames, steps and continuation model when the first model changes: its own
    presets and defaults (MAGI-1: whole 24-frame chunks, and MAGI-1 continues its own clip)."""
    card = get_card(model_id)
    d = card.defaults
    magi = is_magi_card(card)
    step = chunk_frames(card) if magi else 4
    return (
        gr.update(choices=[r.label for r in card.resolutions], value=card.resolution(d.resolution).label),
        gr.update(minimum=step if magi else 1, maximum=card.max_frames, value=d.frames, step=step),
        gr.update(value=d.steps),
        gr.update(value=model_id) if magi and model_id in continue_ids else gr.update(),
    )


def build_chain_tab(studio: Studio) -> SendButtons:
    """Create the tab inside the caller's ``gr.Tab``; returns its result with the send buttons."""
    dev = studio.settings.dev
    t2v_cards, continue_cards = cards_for("t2v", dev=dev), cards_for("continue", dev=dev)
    upscale_cards = cards_for("upscale", dev=dev)
    first = t2v_cards[0]
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("Makes a clip, extends it again and again, and optionally upscales it: one job.")
            model = gr.Dropdown(
                [(c.name, c.id) for c in t2v_cards], value=first.id, label="Text-to-video model"
            )
            prompt = gr.Textbox(label="Prompt", lines=3)
            resolution = gr.Dropdown(
                [r.label for r in first.resolutions],
                value=first.resolution(first.defaults.resolution).label,
                label="Resolution",
                allow_custom_value=True,
            )
            frames = gr.Slider(
                1, first.max_frames, value=first.defaults.frames, step=4, label="First clip frames"
            )
            steps = gr.Slider(1, 100, value=first.defaults.steps, step=1, label="Steps")
            seed = seed_box(-1)
            continue_model = gr.Dropdown(
                [(c.name, c.id) for c in continue_cards],
                value=continue_cards[0].id,
                label="Continuation model",
            )
            continuations = gr.Slider(0, 10, value=2, step=1, label="Continuations")
            seconds = gr.Slider(0.5, 20, value=4, step=0.5, label="Seconds added by each")
            upscale_model = gr.Dropdown(
                [("No upscale", "")] + [(c.name, c.id) for c in upscale_cards],
                value="",
                label="Then upscale with",
            )
            scale = number_choice([2, 4], 4, label="Upscale factor")
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
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress
    ) -> Iterator[tuple[Any, ...]]:
        card = get_card(model_id)
        t2v = {"model": model_id, "prompt": prompt_text, "steps": step_count, "seed": seed_value}
        # the slider gives whole chunks (MAGI-1) or 4k+1 frames; other counts are refused with the rule
        if is_magi_card(card):  # whole 24-frame chunks at a preset resolution
            t2v |= {"resolution": resolution_label, "frames": whole(frame_count)}
        else:
            width, height = resolution_size(card, resolution_label)
            t2v |= {"width": width, "height": height, "frames": whole(frame_count)}
        yield from run_job(
            studio,
            {
                "task": "chain",
                "t2v": t2v,
                "continuations": continuation_count,
                "seconds": seconds_each,
                "continue_model": continue_id,
                "upscale_model": upscale_id or None,
                **({} if factor is None else {"upscale_scale": choice_number(factor)}),
            },
            progress,
            DETAIL_KEYS,
        )

    inputs = [
        model,
        prompt,
        resolution,
        frames,
        steps,
        seed,
        continue_model,
        continuations,
        seconds,
        upscale_model,
        scale,
    ]
    continue_ids = [c.id for c in continue_cards]
    model.change(
        lambda model_id: first_model_settings(model_id, continue_ids),
        model,
        [resolution, frames, steps, continue_model],
        api_name=False,
    )
    wire_job(studio, start, cancel, run, inputs, outputs.wired, api_name="long_video")
    return outputs.result
