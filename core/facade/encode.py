"""A tab's form values (keyed by its API parameter names) as the request dict the studio parses.

The one place for the UI's value rules: the cache encodings, the resolution text, the speed options,
what 0 or an empty box means. Values are passed on as given; the request types check them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.caches.config import speed_presets
from core.continuation import whole_blocks
from core.facade.few_step import few_step_values
from core.facade.fields import choice_number, whole
from core.magi.request import is_magi_card
from core.validation import ConfigError
from weights.registry import ModelCard, get_card

AUTO_METHOD = "auto"
COMPILE_CHOICES = {"auto": "auto", "on": True, "off": False}

Values = Mapping[str, Any]


def step_cache(speed: str | None, method: str | None, threshold: float | None) -> dict[str, Any] | None:
    """The request's ``cache`` for the step-cache controls (Wan text to video); None means no cache.

    An Advanced method wins over the Speed radio; its threshold, when empty, comes from the preset. A
    threshold with the Auto method is that of the presets' method (``presets/speed.yaml``), so that it is
    checked against that method's range, never dropped for the preset's value.
    """
    preset = (speed or "Off").lower()
    if threshold is not None and method in (None, "", AUTO_METHOD):
        method = speed_presets()["preset_method"]
    if method in (None, "", AUTO_METHOD, "none"):
        return None if preset == "off" else {"preset": preset}
    if threshold is not None:
        return {"method": method, "threshold": threshold}
    return {"method": method, "preset": "fast" if preset == "off" else preset}


def chunk_cache(speed: str | None, threshold: float | None = None) -> dict[str, Any] | None:
    """The request's ``cache`` for the chunk-cache controls (FlowCache: SkyReels and MAGI-1): an explicit
    threshold wins over the Speed preset; Off and empty mean none."""
    if threshold is not None and threshold > 0:
        return {"method": "flowcache", "threshold": threshold}
    preset = (speed or "Off").lower()
    return None if preset == "off" else {"preset": preset}


def speed_options(attention: str, compile_choice: str, turbo: bool) -> dict[str, Any]:
    """The Speed options as the mapping ``core.speed.parse_speed_config`` validates."""
    return {
        "attention": attention,
        "compile": COMPILE_CHOICES.get(compile_choice, compile_choice),
        "turbo": turbo,
    }


def resolution_size(card: ModelCard, text: Any) -> tuple[int, int]:
    """Width and height from a preset label, a preset name, or ``WIDTHxHEIGHT`` (the API may send any);
    anything else (``-64x48``, ``64x48px``) is refused, not read as the numbers inside it."""
    for res in card.resolutions:
        if text in (res.label, res.name):
            return res.width, res.height
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text if isinstance(text, str) else "")
    if not match:
        raise ConfigError(
            f"resolution {text!r}: pick one of {[r.label for r in card.resolutions]} or give WIDTHxHEIGHT "
            "(two whole numbers, e.g. 832x480)"
        )
    return int(match[1]), int(match[2])


def overlap_frames(card: ModelCard, overlap: float, ar_step: float = 0, block: float = 0) -> int:
    """The overlap a continuation uses: the form's, or (0) the model's default rounded to whole causal
    blocks as the request does (``core.continuation``)."""
    if int(overlap or 0):
        return int(overlap)
    blocks = int(block or 0) or (5 if int(ar_step or 0) else 1)
    return whole_blocks(card.extra.get("overlap_history", 17), blocks)


def t2v_request(v: Values) -> dict[str, Any]:
    """``/t2v``'s values as a ``t2v`` request (MAGI-1: chunks, window, KV budget and chunk cache)."""
    card = get_card(v["model_id"])
    if is_magi_card(card):
        return {
            "task": "t2v",
            "model": card.id,
            "prompt": v["prompt_text"],
            "resolution": v["resolution_label"],
            "chunks": int(v["chunks"] or 0),
            "steps": int(v["step_count"] or 0),
            "guidance": v["guidance_scale"],
            "seed": v["seed_value"],
            "window_size": int(v["window"] or 0),
            "kv_budget": int(v["kv_budget"] or 0),
            "cache": chunk_cache(v["chunk_speed"]),
        }
    width, height = resolution_size(card, v["resolution_label"])
    return {
        "model": card.id,
        "prompt": v["prompt_text"],
        "negative_prompt": v["negative_text"],
        "width": width,
        "height": height,
        "frames": v["frame_count"],  # the slider gives 4k+1; anything else is refused with the rule
        "steps": v["step_count"],
        "guidance": v["guidance_scale"],
        "flow_shift": v["flow_shift"] or None,
        "seed": v["seed_value"],
        "memory_level": v["level"],
        "cache": step_cache(v["speed_preset"], v["method"], v["threshold"]),
        "speed": speed_options(v["attention"], v["compile_choice"], v["turbo"]),
        "multi_gpu": v["multi_gpu"],
    } | few_step_values(v)


def continue_request(v: Values) -> dict[str, Any]:
    """``/continue``'s values as a ``continue`` request (0 means the model's default)."""
    card = get_card(v["model_id"])
    common = {
        "task": "continue",
        "model": card.id,
        "video": v["video_path"] or "",
        "image": v.get("image_path") or None,  # a start picture instead of the clip
        "prompt": v["prompt_text"],
        "seconds": v["seconds_to_add"],
        "continuation_only": not v["keep"],
        "guidance": v["guidance_scale"],
        "seed": v["seed_value"],
        "cache": chunk_cache(v["speed_preset"], v["cache_threshold"]),
    }
    if is_magi_card(card):  # seconds rounded up to whole chunks by the request
        return common | {
            "steps": int(v["step_count"] or 0),
            "window_size": int(v["window"] or 0),
            "kv_budget": int(v["kv_budget"] or 0),
        }
    return common | {
        "negative_prompt": v["negative_text"],
        "overlap_history": int(v["overlap_frames"]),
        "ar_step": int(v["ar"]),
        "causal_block_size": int(v["block_size"]),
        "base_num_frames": int(v["window_frames"]),
        "addnoise_condition": v["noise_level"],
        "steps": v["step_count"],
        "shift": v["flow_shift"] or None,
        "memory_level": v["level"],
    }


def chain_request(v: Values) -> dict[str, Any]:
    """``/long_video``'s values as a ``chain`` request; the frames go as given (whole chunks for MAGI-1 or
    4k+1; other counts are refused with the rule)."""
    card = get_card(v["model_id"])
    t2v = {"model": card.id, "prompt": v["prompt_text"], "steps": v["step_count"], "seed": v["seed_value"]}
    if is_magi_card(card):  # whole 24-frame chunks at a preset resolution
        t2v |= {"resolution": v["resolution_label"], "frames": whole(v["frame_count"])}
    else:
        width, height = resolution_size(card, v["resolution_label"])
        t2v |= {"width": width, "height": height, "frames": whole(v["frame_count"])}
    if v.get("start_image"):
        t2v["image"] = v["start_image"]
    factor = v["factor"]
    return {
        "task": "chain",
        "t2v": t2v,
        "continuations": v["continuation_count"],
        "seconds": v["seconds_each"],
        "continue_model": v["continue_id"],
        "upscale_model": v["upscale_id"] or None,
        **({} if factor is None else {"upscale_scale": choice_number(factor)}),
        **part_prompts(v.get("part_prompts")),
        **part_seeds(v.get("part_seeds")),
        "interpolate": v.get("interpolation") or None,
    }


def part_prompts(text: str | None) -> dict[str, Any]:
    """The per-part prompts box (one line per part; a blank line keeps the part before's) as ``prompts``;
    nothing when it is empty."""
    lines = (text or "").strip("\n").splitlines()
    return {"prompts": [line.strip() for line in lines]} if any(line.strip() for line in lines) else {}


def part_seeds(text: str | None) -> dict[str, Any]:
    """The per-part seeds box (comma- or line-separated, the first clip first; blank or -1: the part's seed
    follows from the first one) as ``seeds``; nothing when it is empty."""
    tokens = [token.strip() for token in re.split(r"[,\n]", text or "")]
    while tokens and not tokens[-1]:
        tokens.pop()
    seeds = []
    for token in tokens:
        try:
            seeds.append(int(token) if token else -1)
        except ValueError:
            raise ConfigError(
                f"Seed per part: {token!r} is not a whole number; give one seed per part (the first clip "
                "first), separated by commas, or leave a part blank to derive it"
            ) from None
    return {"seeds": seeds} if any(seed >= 0 for seed in seeds) else {}


def upscale_request(v: Values) -> dict[str, Any]:
    """``/upscale``'s values as an ``upscale`` request."""
    if not v["video_path"]:
        raise ConfigError("Choose a video to upscale.")
    return {
        "task": "upscale",
        "model": v["model_id"],
        "video": v["video_path"],
        "scale": choice_number(v["scale_value"]),
        "variant": v["variant_value"],
        "max_input_width": v["max_width_value"] or None,
        "quality": v["quality_value"],
        "seed": v["seed_value"],
        "pipeline_gpus": 2 if v["split_gpus"] else 1,
        "fit": v.get("fit_value") or "pad",
        "interpolate": v.get("interpolation") or None,
    }


ENCODERS = {
    "t2v": t2v_request,
    "continue": continue_request,
    "long_video": chain_request,
    "upscale": upscale_request,
}
"""Each job endpoint's encoder, by its API name."""
