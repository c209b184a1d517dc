"""MAGI-1 controls and result helpers shared by the Text to video and Continue tabs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.magi.request import FIELD_HELP as MAGI_HELP
from core.magi.request import MAX_WINDOW, default_window, is_magi_card
from core.studio import Studio
from weights.registry import ModelCard

MAGI_MEMORY_NOTE = (
    "MAGI-1 keeps its DiT and VAE on the GPU (T5 on the CPU unless the GPU has room). The window size sets "
    "the peak: 4 chunks at a time is the published speed, 1 needs the least memory; a KV budget caps what "
    "earlier chunks keep."
)


def build_window_controls(card: ModelCard) -> tuple[gr.Slider, gr.Number]:
    """The window size (chunks denoised at once) and KV budget inputs, at ``card``'s defaults."""
    window = gr.Slider(
        1,
        4,
        value=default_window(card),
        step=1,
        label="Window size",
        info=MAGI_HELP["window_size"],
    )
    kv_budget = gr.Number(
        value=0, precision=0, minimum=0, label="KV budget (tokens)", info=MAGI_HELP["kv_budget"]
    )
    return window, kv_budget


def model_form_updates(card: ModelCard, *magi_values: Any) -> tuple[Any, ...]:
    """The model-change updates the Text to video and Continue tabs share, in their forms' order: steps,
    guidance, negative prompt and description; three Wan / SkyReels-only groups (hidden for MAGI-1); the
    MAGI-1 options (shown for it); the tab's own ``magi_values``; the window size (the card's for MAGI-1)."""
    d = card.defaults
    magi = is_magi_card(card)
    return (
        gr.update(value=d.steps),
        gr.update(value=d.guidance),
        gr.update(value=d.negative_prompt, visible=not magi),
        gr.update(value=card.description),
        *(gr.update(visible=not magi) for _ in range(3)),
        gr.update(visible=magi),
        *magi_values,
        gr.update(value=default_window(card) if magi else MAX_WINDOW),
    )


def magi_cache_summary(stats: dict[str, Any]) -> str:
    """`` · flowcache reused 40 of 120 chunk-steps · KV budget 4096 tokens`` for what ran, "" for neither."""
    text = ""
    if "chunk_steps_reused" in stats:
        total = stats["chunk_steps_computed"] + stats["chunk_steps_reused"]
        text += f" · flowcache reused {stats['chunk_steps_reused']} of {total} chunk-steps"
    if "kv_budget_tokens" in stats:
        text += f" · KV budget {stats['kv_budget_tokens']} tokens"
    return text


def with_preview(studio: Studio, updates: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Pass :func:`ui.jobs.run_job`'s updates on, showing the running job's latest preview (MAGI-1 writes
    one after each chunk) in the result video while it runs."""
    shown = None
    for job_id, video, details, status in updates:
        job = studio.queue.get(job_id) if job_id else None
        preview = job.preview if job is not None else None
        if preview and preview != shown:
            shown, video = preview, preview
        yield job_id, video, details, status
