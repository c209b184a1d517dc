"""A generation record's request as a tab's form values: the inverse of ``core.facade.encode`` (and
``core.facade.i2v``), so that "Use these settings again" fills the tab that made a video and submitting
those values makes the same request (same seed, frames and size)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import av

from core.facade.fields import SPEEDS
from core.facade.forms import MATCH_IMAGE
from core.lora.spec import parse_loras
from core.magi.request import is_magi_card
from core.validation import ConfigError
from core.video_io import read_record
from weights.few_step import FewStepLora
from weights.registry import ModelCard, get_card

Request = Mapping[str, Any]
Values = dict[str, Any]

COMPILE_VALUES = {True: "on", False: "off", "auto": "auto"}


def speed_label(preset: Any) -> str:
    """A cache preset name (``fast``) as the Speed radio's choice (``Fast``); none is Off."""
    for label in SPEEDS:
        if str(preset or "off").lower() == label.lower():
            return label
    return SPEEDS[0]


def step_cache_values(cache: Any) -> Values:
    """The Speed radio, Advanced method and threshold of a t2v ``cache`` (``encode.step_cache`` undone)."""
    cache = cache if isinstance(cache, dict) else {}
    method = cache.get("method") or "auto"
    return {
        "speed_preset": speed_label(cache.get("preset")),
        "method": method,
        "threshold": cache.get("threshold"),
    }


def chunk_cache_values(cache: Any) -> tuple[str, float | None]:
    """The Speed radio and threshold for a chunk ``cache`` (``encode.chunk_cache``'s inverse)."""
    cache = cache if isinstance(cache, dict) else {}
    if cache.get("threshold") is not None:
        return SPEEDS[0], float(cache["threshold"])
    return speed_label(cache.get("preset")), None


def resolution_label(card: ModelCard, width: Any, height: Any) -> str:
    """The preset label of a size, else ``WIDTHxHEIGHT`` (the resolution box takes either)."""
    for res in card.resolutions:
        if (res.width, res.height) == (width, height):
            return res.label
    return f"{width}x{height}"


def loras_text(loras: Any, preset: tuple[FewStepLora, ...] = ()) -> str:
    """The request's ``loras`` as the LoRAs box's ``name:strength[:expert]`` text, without the ``preset``
    step-distill LoRAs as the fast mode adds them (it adds them again). A fetched file is written by its
    loras-folder name (a preset's at another strength too: that name sets the preset's strength again)."""
    added = {(lora.repo, lora.file): lora for lora in preset}
    entries = []
    for spec in parse_loras(list(loras or ())):
        if (spec.repo, spec.name) in added and spec.strength == added[spec.repo, spec.name].strength:
            continue
        name = spec.file_name if spec.repo or spec.url else spec.name  # fetched: in the folder by now
        entry = f"{name}:{spec.strength:.15g}"
        entries.append(entry if spec.expert == "both" else f"{entry}:{spec.expert}")
    return ", ".join(entries)


def magi_t2v_values(r: Request) -> Values:
    return {
        "model_id": r["model"],
        "prompt_text": r.get("prompt", ""),
        "resolution_label": r.get("resolution"),
        "chunks": r.get("chunks"),
        "step_count": r.get("steps"),
        "guidance_scale": r.get("guidance"),
        "seed_value": r.get("seed", -1),
        "window": r.get("window_size"),
        "kv_budget": r.get("kv_budget", 0),
        "chunk_speed": chunk_cache_values(r.get("cache"))[0],
    }


def t2v_values(r: Request) -> Values:
    """``/t2v``'s values for a t2v request (Wan or MAGI-1)."""
    card = get_card(r["model"])
    if is_magi_card(card):
        return magi_t2v_values(r)
    speed = r.get("speed") or {}
    few_step = bool(r.get("few_step"))
    return {
        "model_id": card.id,
        "prompt_text": r.get("prompt", ""),
        "negative_text": r.get("negative_prompt") or "",
        "resolution_label": resolution_label(card, r.get("width"), r.get("height")),
        "frame_count": r.get("frames"),
        "step_count": r.get("steps") or card.defaults.steps,
        "guidance_scale": card.defaults.guidance if r.get("guidance") is None else r["guidance"],
        "flow_shift": 0 if few_step else (r.get("flow_shift") or 0),
        "seed_value": r.get("seed", -1),
        "level": str(r.get("memory_level", "auto")),
        **step_cache_values(r.get("cache")),
        "attention": speed.get("attention", "auto"),
        "compile_choice": COMPILE_VALUES.get(speed.get("compile", "auto"), "auto"),
        "turbo": bool(speed.get("turbo", False)),
        "multi_gpu": r.get("multi_gpu", "auto"),
        "few_step": few_step,
        "first_step_guidance": r.get("first_step_guidance"),
        "loras_text": loras_text(r.get("loras"), card.few_step.loras if few_step and card.few_step else ()),
    }


def i2v_values(r: Request) -> Values:
    """``/i2v``'s values: Text to video's, the images, Match the image when the request had no size."""
    values = t2v_values(r)
    if r.get("width") is None:
        values["resolution_label"] = MATCH_IMAGE
    return values | {"image_path": r.get("image") or None, "end_image_path": r.get("end_image") or None}


def continue_values(r: Request) -> Values:
    """``/continue``'s values for a continue request (Wan SkyReels or MAGI-1)."""
    card = get_card(r["model"])
    speed, threshold = chunk_cache_values(r.get("cache"))
    seconds = r.get("seconds") or round(r.get("add_frames", 0) / card.fps, 3)
    values = {
        "model_id": card.id,
        "video_path": r.get("video") or None,
        "image_path": r.get("image") or None,
        "prompt_text": r.get("prompt", ""),
        "seconds_to_add": seconds,
        "keep": not r.get("continuation_only", False),
        "guidance_scale": r.get("guidance"),
        "seed_value": r.get("seed", -1),
        "speed_preset": speed,
        "cache_threshold": threshold,
        "step_count": r.get("steps"),
    }
    if is_magi_card(card):
        return values | {"window": r.get("window_size"), "kv_budget": r.get("kv_budget", 0)}
    return values | {
        "negative_text": r.get("negative_prompt") or "",
        "overlap_frames": r.get("overlap_history", 0),
        "ar": r.get("ar_step", 0),
        "block_size": r.get("causal_block_size", 0),
        "window_frames": r.get("base_num_frames", 0),
        "noise_level": r.get("addnoise_condition"),
        "flow_shift": r.get("shift") or 0,
        "level": str(r.get("memory_level", "auto")),
    }


def upscale_values(r: Request) -> Values:
    return {
        "video_path": r.get("video") or None,
        "model_id": r["model"],
        "scale_value": str(r.get("scale", 4)),
        "variant_value": r.get("variant"),
        "max_width_value": r.get("max_input_width") or 0,
        "quality_value": r.get("quality"),
        "seed_value": r.get("seed", 0),
        "split_gpus": r.get("pipeline_gpus", 1) >= 2,
        "fit_value": r.get("fit") or "crop",
        "interpolation": r.get("interpolate") or "",
    }


def chain_values(r: Request) -> Values:
    """``/long_video``'s values for a chain request."""
    t2v = r.get("t2v") or {}
    card = get_card(t2v["model"])
    if is_magi_card(card) or t2v.get("resolution"):
        label = t2v.get("resolution")
    else:
        label = resolution_label(card, t2v.get("width"), t2v.get("height"))
    return {
        "model_id": card.id,
        "prompt_text": t2v.get("prompt", ""),
        "resolution_label": label,
        "frame_count": t2v.get("frames") or card.defaults.frames,
        "step_count": t2v.get("steps") or card.defaults.steps,
        "seed_value": t2v.get("seed", -1),
        "continue_id": r.get("continue_model"),
        "continuation_count": r.get("continuations", 1),
        "seconds_each": r.get("seconds"),
        "upscale_id": r.get("upscale_model") or "",
        "factor": str(r.get("upscale_scale", 4)),
        "part_prompts": "\n".join(r.get("prompts") or ()),
        "part_seeds": ", ".join(str(seed) for seed in r.get("seeds") or ()),
        "start_image": t2v.get("image") or None,
        "interpolation": r.get("interpolate") or "",
    }


DECODERS: dict[str, tuple[str, Callable[[Request], Values]]] = {
    "t2v": ("t2v", t2v_values),
    "i2v": ("i2v", i2v_values),
    "continue": ("continue", continue_values),
    "upscale": ("upscale", upscale_values),
    "chain": ("long_video", chain_values),
}
"""A request's task name → (the tab's API name, its form values)."""


def request_form(request: Request) -> tuple[str, Values]:
    """The tab (its API name) and form values that make ``request`` again (its concrete seed kept)."""
    task = request.get("task") or "t2v"
    if task not in DECODERS:
        raise ConfigError(f"a {task!r} request has no tab to fill; use the Batch tab or the API")
    tab, decode = DECODERS[task]
    try:
        return tab, decode(request)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"this {task} request is incomplete ({exc}); it cannot fill the form") from exc


def read_file_record(path: str | Path) -> dict[str, Any]:
    """The generation record of a video made by this app (embedded in its mp4) or of its sidecar JSON."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path.name}: no such file; drop an mp4 made by this app or its .json")
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.suffix.lower() == ".json" else None
        if record is None:
            record = read_record(path)
    except (OSError, ValueError, KeyError, IndexError, av.FFmpegError) as exc:
        raise ConfigError(
            f"{path.name} holds no generation record of this app ({type(exc).__name__}); drop an mp4 it made "
            "(the record is in its metadata) or the .json beside it"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("request"), dict):
        raise ConfigError(f"{path.name} is not a generation record of this app (it has no request)")
    return record
