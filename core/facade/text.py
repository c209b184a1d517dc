"""The user-facing lines the forms show beside their inputs: frame and chunk counts in seconds, the
memory estimate, what an input clip becomes, an upscale's output size, a finished job's cache summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.error_text import error_text
from core.magi.request import chunk_frames, context_frames, is_magi_card
from core.memory.levels import LEVELS
from core.memory.planner import MemoryPlan
from core.tasks.t2v import snap_frames
from core.upscale.frame_reader import probe_source
from core.upscale.request import ENGINES
from core.upscale.sizing import ENGINE_ALIGN, plan_size
from core.validation import ConfigError
from core.video_input import open_input
from weights.registry import ModelCard, get_card

MAGI_MEMORY_NOTE = (
    "MAGI-1 keeps its DiT and VAE on the GPU (T5 on the CPU unless the GPU has room). The window size sets "
    "the peak: 4 chunks at a time is the published speed, 1 needs the least memory; a KV budget caps what "
    "earlier chunks keep."
)


def seconds_label(frames: float, card: ModelCard) -> str:
    """A frames slider's note: its frames in seconds, or the model's limit when it asks for more."""
    frames = int(frames)
    if frames > card.max_frames:
        return f"⚠️ {card.name} makes at most {snap_frames(card.max_frames, card)} frames"
    return f"{frames} frames = {frames / card.fps:.2f} s at {card.fps} fps"


def chunks_label(chunks: float, card: ModelCard) -> str:
    """A chunks slider's note: its chunks in frames and seconds."""
    frames = int(chunks) * chunk_frames(card)
    return f"{int(chunks)} chunks = {frames} frames = {frames / card.fps:.2f} s at {card.fps} fps"


def describe_plan(plan: MemoryPlan) -> str:
    """Markdown for the estimate box: the level, the expected peaks against what is free, and why."""
    level = LEVELS[plan.level]
    icon = "✅" if plan.fits else "⚠️"
    if plan.free_vram_gb is None:
        memory = f"RAM ~{plan.ram_gb:.1f} GB of {plan.ram_available_gb:.1f} GB available"
    else:
        memory = (
            f"GPU ~{plan.vram_gb:.1f} GB of {plan.free_vram_gb:.1f} GB free · "
            f"RAM ~{plan.ram_gb:.1f} GB of {plan.ram_available_gb:.1f} GB available"
        )
    who = "auto" if plan.chosen_by == "auto" else "your choice"
    return f"{icon} **Memory level {level.number}: {level.label}** ({who}) — {memory}\n\n{plan.reason}"


def describe_input(video_path: str | None, card: ModelCard, overlap: int) -> str:
    """What the clip becomes for this model (using ``overlap`` frames of its end), or why it cannot."""
    if not video_path:
        return "Upload a clip (mp4, mov, mkv, webm, avi, ts), or a start image to begin from."
    try:
        if is_magi_card(card):
            video = open_input(video_path, card)
            return video.describe(context_frames(card, video.frames, video.path.name))
        return open_input(video_path, card, min_frames=overlap).describe(overlap)
    except ConfigError as exc:
        return f"⚠️ {exc}"


def upscale_engine(model_id: str | None) -> str:
    """The upscaler a model runs on ("flashvsr" or "esrgan"; FlashVSR when none is chosen)."""
    return ENGINES.get(get_card(model_id).pipeline, "flashvsr") if model_id else "flashvsr"


def size_preview(
    video: str | None, scale: Any, max_width: float | None, model_id: str | None, fit: str | None = "crop"
) -> str:
    """The output size the upscale will have with ``model_id`` (FlashVSR's when None), or why it cannot."""
    if not video:
        return "Output size: choose a video."
    try:
        info = probe_source(Path(video))
        align = ENGINE_ALIGN[upscale_engine(model_id)]
        narrow = int(max_width) if max_width else None
        size = plan_size(info.width, info.height, int(scale), narrow, align, fit or "crop")
    except (ConfigError, ValueError, OSError) as exc:
        return f"Cannot upscale this video: {error_text(exc)}"
    audio = "with its audio" if info.has_audio else "no audio"
    return (
        f"Output: **{size.width}x{size.height}**, {info.frames} frames at {info.fps:g} fps, {audio} "
        f"({size.describe()})"
    )


def step_cache_summary(stats: dict[str, Any]) -> str:
    """`` · teacache reused 12 of 100 forwards, ~8.1 s saved`` for a cached run, "" otherwise."""
    if stats.get("method", "none") == "none":
        return ""
    total = stats["steps_computed"] + stats["steps_reused"]
    saved = stats.get("estimated_seconds_saved") or 0.0
    return f" · {stats['method']} reused {stats['steps_reused']} of {total} forwards, ~{saved:.1f} s saved"


def chunk_cache_summary(stats: dict[str, Any]) -> str:
    """`` · flowcache reused 40 of 120 chunk-steps`` (and MAGI-1's `` · KV budget 4096 tokens``) for what
    ran, "" for neither."""
    text = ""
    if "chunk_steps_reused" in stats:
        total = stats["chunk_steps_computed"] + stats["chunk_steps_reused"]
        text += f" · flowcache reused {stats['chunk_steps_reused']} of {total} chunk-steps"
    if "kv_budget_tokens" in stats:
        text += f" · KV budget {stats['kv_budget_tokens']} tokens"
    return text
