"""Upscale tab: input video, model (FlashVSR or a light Real-ESRGAN), scale, variant, size limit, quality,
FlashVSR over 2 GPUs (with several); Upscale, Cancel, video, details."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from core.studio import Studio
from core.upscale.config import VARIANTS
from core.upscale.frame_reader import probe_source
from core.upscale.request import ENGINES
from core.upscale.sizing import ENGINE_ALIGN, plan_size
from core.validation import ConfigError
from ui.form_fields import choice_number, number_choice, number_choices, seed_box
from ui.jobs import run_job, wire_job
from ui.send import TabIO, job_buttons, job_outputs
from weights.registry import ModelCard, cards_for, get_card

DETAIL_KEYS = (
    "model_name",
    "engine",
    "variant",
    "arch",
    "scale",
    "size_note",
    "frames",
    "fps",
    "audio",
    "kv_cache_offloaded",
    "encoder",
    "time_s",
    "peak_memory_gb",
    "device",
    "pipeline",
    "gpu_plan",
    "output",
)
VARIANT_LABELS = {"tiny-long": "Tiny-Long (fast, any length)", "full": "Full (Wan2.1 VAE decoder)"}


def _engine(model: str | None) -> str:
    return ENGINES.get(get_card(model).pipeline, "flashvsr") if model else "flashvsr"


def size_preview(
    video: str | None, scale: str | int, max_width: float | None, model: str | None = None
) -> str:
    """The output size the job will have with ``model`` (FlashVSR's when None), or why it cannot run."""
    if not video:
        return "Output size: choose a video."
    try:
        info = probe_source(Path(video))
        align = ENGINE_ALIGN[_engine(model)]
        size = plan_size(info.width, info.height, int(scale), int(max_width) if max_width else None, align)
    except (ConfigError, ValueError, OSError) as exc:
        return f"Cannot upscale this video: {exc}"
    audio = "with its audio" if info.has_audio else "no audio"
    return (
        f"Output: **{size.width}x{size.height}**, {info.frames} frames at {info.fps:g} fps, {audio} "
        f"({size.describe()})"
    )


def model_controls(card: ModelCard) -> tuple[str, Any, Any]:
    """What choosing ``card`` changes: its description, the scales it offers (as text: "2", "4"), the
    variant's visibility."""
    native = card.extra.get("scale", 4)
    scales = [s for s in (2, 4) if s <= native]
    info = "FlashVSR is tuned for 4x" if _engine(card.id) == "flashvsr" else f"the model upscales x{native}"
    return (
        card.description,
        gr.update(**number_choices(scales, native), info=info),
        gr.update(visible=_engine(card.id) == "flashvsr"),
    )


def several_gpus(studio: Studio) -> bool:
    """Whether the studio runs jobs on several GPUs (a dispatcher over a worker per GPU)."""
    return getattr(studio, "dispatcher", None) is not None


def split_control(model: str | None, gpus: bool) -> Any:
    """The "split over 2 GPUs" box: shown for a FlashVSR model on a studio with several GPUs, else hidden
    and cleared (Real-ESRGAN runs on one GPU)."""
    if gpus and model and _engine(model) == "flashvsr":
        return gr.update(visible=True)
    return gr.update(visible=False, value=False)


def build_upscale_tab(studio: Studio) -> TabIO:
    """Create the tab inside the caller's ``gr.Tab``; returns its input and result (other tabs link to)."""
    cards = cards_for("upscale", dev=studio.settings.dev)
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Video(label="Input video", sources=["upload"])
            model = gr.Dropdown(
                [(c.name, c.id) for c in cards], value=cards[0].id if cards else None, label="Model"
            )
            about = gr.Markdown(cards[0].description if cards else "No upscaling model installed.")
            scale = number_choice([2, 4], 4, label="Scale", info="FlashVSR is tuned for 4x")
            variant = gr.Dropdown(
                [(VARIANT_LABELS[v], v) for v in VARIANTS], value=VARIANTS[0], label="Variant"
            )
            max_width = gr.Number(
                value=0,
                precision=0,
                label="Max input width (0 = keep)",
                info="Narrow the input first to cap the output size",
            )
            with gr.Accordion("Export", open=False):
                quality = gr.Slider(
                    1,
                    10,
                    value=8,
                    step=1,
                    label="Quality (1 = small file, 10 = best)",
                    info="NVENC's CQ when this GPU encodes H.264, else x264's CRF (35 .. 12)",
                )
                seed = seed_box(0)
            first = cards[0].id if cards else None
            split = gr.Checkbox(
                value=False,
                label="Split the upscaler over 2 GPUs",
                info="Half of FlashVSR's blocks on a second GPU, for long 4K jobs that do not fit one",
                visible=several_gpus(studio) and first is not None and _engine(first) == "flashvsr",
            )
            preview = gr.Markdown(size_preview(None, 4, None))
            upscale, cancel = job_buttons("Upscale")
        with gr.Column(scale=1):
            outputs = job_outputs()
    for trigger in (source.change, scale.change, max_width.change, model.change):
        trigger(size_preview, [source, scale, max_width, model], preview, api_name=False)
    model.change(lambda m: model_controls(get_card(m)), model, [about, scale, variant], api_name=False)
    model.change(lambda m: split_control(m, several_gpus(studio)), model, split, api_name=False)

    def run(
        video_path: str | None,
        model_id: str,
        scale_value: str,
        variant_value: str,
        max_width_value: float | None,
        quality_value: float,
        seed_value: float,
        split_gpus: bool = False,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> Iterator[tuple[Any, ...]]:
        if not video_path:
            raise gr.Error("Choose a video to upscale.", title="Bad request")
        yield from run_job(
            studio,
            {
                "task": "upscale",
                "model": model_id,
                "video": video_path,
                "scale": choice_number(scale_value),
                "variant": variant_value,
                "max_input_width": max_width_value or None,
                "quality": quality_value,
                "seed": seed_value,
                "pipeline_gpus": 2 if split_gpus else 1,
            },
            progress,
            DETAIL_KEYS,
        )

    wire_job(
        studio,
        upscale,
        cancel,
        run,
        [source, model, scale, variant, max_width, quality, seed, split],
        outputs.wired,
        api_name="upscale",
    )
    return TabIO(source, outputs.result)
