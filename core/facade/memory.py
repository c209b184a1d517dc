"""Which form fields each tab remembers between launches, and how a stored value comes back: checked
against the app's current models and limits, stale ones dropped. The UI keeps the stored dict in the
visitor's browser (localStorage), so nothing is shared between the visitors of a Space."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from core.facade.encode import resolution_size
from core.facade.few_step import parse_loras_text
from core.validation import ConfigError
from weights.registry import get_card

STORAGE_KEY = "video-studio-settings"
"""The browser's localStorage key of the remembered settings (one dict: tab → field → value)."""
STORAGE_SECRET = "video-studio-form-settings"
"""Fixed, so that stored settings still read after the app restarts (they hold no secret)."""

SAMPLING = ("step_count", "guidance_scale", "flow_shift", "negative_text")
STEP_SPEED = ("speed_preset", "method", "threshold", "attention", "compile_choice", "turbo")
MAGI = ("window", "kv_budget")
REMEMBERED: dict[str, tuple[str, ...]] = {
    "t2v": (
        "model_id", "resolution_label", "frame_count", "level", *SAMPLING, *STEP_SPEED, *MAGI,
        "chunks", "chunk_speed", "multi_gpu", "few_step", "first_step_guidance", "loras_text",
    ),
    "i2v": (
        "model_id", "resolution_label", "frame_count", "level", *SAMPLING, *STEP_SPEED,
        "few_step", "first_step_guidance", "loras_text",
    ),
    "continue": (
        "model_id", "seconds_to_add", "keep", "level", *SAMPLING, *MAGI, "overlap_frames", "ar",
        "block_size", "window_frames", "noise_level", "speed_preset", "cache_threshold",
    ),
    "upscale": ("model_id", "scale_value", "variant_value", "max_width_value", "quality_value", "split_gpus"),
    "long_video": (
        "model_id", "resolution_label", "frame_count", "step_count", "continue_id", "continuation_count",
        "seconds_each", "upscale_id", "factor",
    ),
}  # fmt: skip
"""The fields each tab (its API name) remembers: settings, not content (prompts, seeds, input files)."""

Props = Mapping[str, Mapping[str, Any]]


def remembered(task: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """What to store of a tab's submitted ``values``."""
    return {name: values[name] for name in REMEMBERED.get(task, ()) if name in values}


def choice_values(choices: list[Any]) -> list[Any]:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in choices]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def custom_resolution(model_id: str) -> Callable[[Any], bool]:
    """Whether a resolution box value that is no preset reads as ``WIDTHxHEIGHT`` for the model."""

    def fits(value: Any) -> bool:
        try:
            resolution_size(get_card(model_id), value)
        except (ConfigError, KeyError):
            return False
        return True

    return fits


def fits_field(value: Any, props: Mapping[str, Any], custom: Callable[[Any], bool] | None = None) -> bool:
    """Whether ``value`` is one the field (its component properties) takes now: one of its choices (or
    ``custom`` of it), within its limits and on its step, of its default's type."""
    if props.get("choices") is not None:
        return value in choice_values(props["choices"]) or (custom is not None and custom(value))
    default = props.get("value")
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if value is None:
        return default is None
    if not is_number(value):
        return False
    low, high, step = props.get("minimum"), props.get("maximum"), props.get("step")
    if (low is not None and value < low) or (high is not None and value > high):
        return False
    if step and low is not None:
        steps = (value - low) / step
        return abs(steps - round(steps)) < 1e-6
    return True


def valid_value(name: str, value: Any, props: Mapping[str, Any], model_id: str | None) -> bool:
    """``fits_field`` with the fields' own rules: a resolution may be ``WIDTHxHEIGHT``, LoRAs must parse."""
    if name == "loras_text":
        try:
            parse_loras_text(value if isinstance(value, str) else None)
        except ConfigError:
            return False
        return isinstance(value, str)
    custom = custom_resolution(model_id) if name == "resolution_label" and model_id else None
    return fits_field(value, props, custom)


def restore(
    task: str, stored: Any, tab: Props, form_for_model: Callable[[str], Props]
) -> tuple[dict[str, Any], list[str]]:
    """The remembered values of ``task`` that still apply, and the names dropped as stale.

    ``tab``: the tab's field properties at start (``Facade.inputs``); ``form_for_model``: the fields that
    change with a model (``Facade.form``). A model the app no longer offers drops every model-bound value
    (they were that model's); other values are checked against the chosen model's limits."""
    saved = stored.get(task) if isinstance(stored, Mapping) else None
    if not isinstance(saved, Mapping):
        return {}, []
    wanted = {name: saved[name] for name in REMEMBERED.get(task, ()) if name in saved and name in tab}
    model_id = wanted.get("model_id")
    if model_id is not None and not fits_field(model_id, tab["model_id"]):
        return {}, sorted(saved)
    model = tab.get("model_id", {}).get("value") if model_id is None else model_id
    limits = {name: dict(props) for name, props in tab.items()}
    for name, props in (form_for_model(model) if model else {}).items():
        limits.setdefault(name, {}).update({k: v for k, v in props.items() if k != "value"})
    kept = {n: v for n, v in wanted.items() if valid_value(n, v, limits.get(n, {}), model)}
    return kept, sorted(set(saved) - set(kept))


def update_stored(stored: Any, task: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The browser's stored dict with ``task``'s remembered values replaced by those of ``values``."""
    base = dict(stored) if isinstance(stored, Mapping) else {}
    return base | {task: remembered(task, values)}
