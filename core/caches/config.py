"""Which step cache a request asks for: :class:`CacheConfig`, validated and resolved against a model card."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core.validation import ConfigError, as_choice, as_float, as_int, from_mapping
from weights.card_facts import CACHE_METHODS, SPEED_PRESETS, TeaCacheCalibration
from weights.registry import ModelCard

METHODS = ("none", *CACHE_METHODS)
PRESETS = ("off", *SPEED_PRESETS)
SPEED_FILE = Path(__file__).resolve().parents[2] / "presets" / "speed.yaml"

# Accepted threshold range per method; taylorseer's "threshold" is its refresh interval in steps.
THRESHOLD_BOUNDS: dict[str, tuple[float, float]] = {
    "teacache": (0.0, 10.0),
    "first_block": (0.0, 1.0),
    "mag": (0.0, 2.0),
    "taylorseer": (1, 50),
}


@dataclass(frozen=True)
class CacheConfig:
    """A step cache: ``method`` with its ``threshold``, or a speed ``preset`` that picks the threshold."""

    method: str = "none"
    threshold: float | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        as_choice("cache method", self.method, METHODS)
        if self.preset is not None:
            as_choice("cache preset", self.preset, PRESETS)
        if self.threshold is None:
            return
        if self.method == "none":
            raise ConfigError("a cache threshold needs a method: teacache, first_block, mag or taylorseer")
        if self.preset is not None:
            raise ConfigError("give either a cache threshold or a speed preset, not both")
        low, high = THRESHOLD_BOUNDS[self.method]
        if self.method == "taylorseer":
            name = "taylorseer threshold (refresh interval in steps)"
            value = as_int(name, self.threshold, low=low, high=high)
        else:
            value = as_float(f"{self.method} threshold", self.threshold, low=low, high=high)
        object.__setattr__(self, "threshold", value)

    @property
    def enabled(self) -> bool:
        return self.method != "none"


@dataclass(frozen=True)
class Calibration:
    """Model-specific data the caches need (from the card's ``caches``, or made up by a benchmark)."""

    teacache: TeaCacheCalibration | None = None
    mag_ratios: tuple[float, ...] | None = None


def parse_cache_config(data: dict[str, Any] | None, card: ModelCard) -> CacheConfig:
    """Validate a request's ``cache`` mapping for ``card`` and resolve presets to a concrete threshold.

    ``None`` or ``{}`` means no cache. The result always has ``method`` and (unless "none") ``threshold``.
    """
    if not data:
        return CacheConfig()
    config = from_mapping(CacheConfig, data, where="cache")
    if config.preset == "off":
        if config.enabled:
            raise ConfigError("cache preset 'off' cannot be combined with a cache method")
        return config
    method = config.method
    if method == "none":
        if config.preset is None:
            return config
        method = speed_presets()["preset_method"]
    _check_supported(method, card)
    if config.threshold is not None:
        return config
    preset = config.preset or "fast"
    return CacheConfig(method=method, threshold=preset_threshold(card, method, preset), preset=None)


def preset_threshold(card: ModelCard, method: str, preset: str) -> float:
    """The threshold that ``preset`` means for ``method`` on ``card``: the card's own (``caches.speeds``),
    else the method's default in ``presets/speed.yaml``."""
    table = card.caches.speeds.get(method) or speed_presets()["methods"].get(method)
    if not table or preset not in table:
        raise ConfigError(f"no {preset!r} speed preset for {method} on {card.name}; give a threshold instead")
    value = table[preset]
    CacheConfig(method=method, threshold=value)
    return value


def calibration_for(card: ModelCard) -> Calibration:
    """What ``card`` states for the caches (``teacache`` and ``mag_ratios`` are None where it has none)."""
    return Calibration(teacache=card.caches.teacache, mag_ratios=card.caches.mag_ratios)


STEP_CACHE_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline")
"""Pipelines whose DiT (``WanTransformer3DModel``) the step caches hook."""


def _check_supported(method: str, card: ModelCard) -> None:
    if card.pipeline not in STEP_CACHE_PIPELINES:
        raise ConfigError(f"step caches support Wan pipelines only; {card.name} uses {card.pipeline}")
    calibration = calibration_for(card)
    if method == "teacache" and calibration.teacache is None:
        raise ConfigError(f"teacache has no calibration for {card.name}; use first_block or taylorseer")
    if method == "mag" and calibration.mag_ratios is None:
        raise ConfigError(f"mag needs magnitude ratios calibrated for {card.name} and none are known")


@lru_cache(maxsize=1)
def speed_presets() -> dict[str, Any]:
    """``presets/speed.yaml`` (the preset method and each method's default thresholds), checked."""
    data = yaml.safe_load(SPEED_FILE.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(data) - {"preset_method", "methods"})
    if unknown:
        keys = ", ".join(unknown)
        raise ConfigError(f"speed.yaml: unknown key(s) {keys}; a model's own thresholds go on its card")
    as_choice("speed.yaml preset_method", data.get("preset_method"), CACHE_METHODS)
    data.setdefault("methods", {})
    for method, table in data["methods"].items():
        as_choice("speed.yaml method", method, CACHE_METHODS)
        for preset in table:
            as_choice(f"speed.yaml {method} preset", preset, SPEED_PRESETS)
    return data
