"""What a finished job's details show, by tab: the record's fields (MAGI-1 records its own), and the
cache summary appended to the status line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.facade.text import chunk_cache_summary, step_cache_summary
from core.magi.request import is_magi_model

T2V_KEYS = (
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
MAGI_T2V_KEYS = (
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
CONTINUE_KEYS = (
    "model_name",
    "seed",
    "input",
    "image",
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
MAGI_CONTINUE_KEYS = (
    "model_name",
    "seed",
    "input",
    "image",
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
UPSCALE_KEYS = (
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
CHAIN_KEYS = ("seed", "frames", "width", "height", "fps", "time_s", "parts", "job_folder", "output")

I2V_KEYS = (*T2V_KEYS[:-1], "image", "end_image", "output")
KEYS = {
    "t2v": T2V_KEYS,
    "i2v": I2V_KEYS,
    "continue": CONTINUE_KEYS,
    "upscale": UPSCALE_KEYS,
    "long_video": CHAIN_KEYS,
}
MAGI_KEYS = {"t2v": MAGI_T2V_KEYS, "continue": MAGI_CONTINUE_KEYS}


def keys(task: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The record fields the tab ``task`` (its API name) shows for the request ``data``."""
    if task in MAGI_KEYS and is_magi_model(data.get("model")):
        return MAGI_KEYS[task]
    return KEYS[task]


def summary(task: str, record: Mapping[str, Any]) -> str:
    """The cache's line for the status: text to video's step cache (or MAGI-1's chunk cache and KV
    budget), a continuation's FlowCache; none for the other tabs."""
    stats = record.get("cache") or {}
    if task not in (*MAGI_KEYS, "i2v") or not stats:
        return ""
    if "chunk_steps_reused" in stats or "kv_budget_tokens" in stats:
        return chunk_cache_summary(stats)
    return step_cache_summary(stats)
