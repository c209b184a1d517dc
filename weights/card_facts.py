"""A model's architecture and step-cache facts, as its card states them (the ``arch`` and ``caches`` keys).

Every consumer reads these from the card: the memory estimate (shapes, parameter counts), the GPU split
(heads, tokens), the ZeroGPU time estimate (tokens) and the step caches (TeaCache fit, MagCache ratios,
per-model speed thresholds). Measured figures stay data in ``presets/memory_calibration.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from core.validation import ConfigError, as_choice, as_float, as_int, from_mapping

CACHE_METHODS = ("teacache", "first_block", "mag", "taylorseer")
SPEED_PRESETS = ("fast", "faster")
MODULATIONS = ("temb", "timestep_proj")


@dataclass(frozen=True)
class ParamCounts:
    """Exact parameter counts in billions: the diffusers/transformers modules built from the Hub configs
    on the meta device. ``dit`` is one expert; ``wide`` the DiT params that layerwise casting leaves in
    the compute dtype at memory level 5 (counted with ``core.memory.low_ram_load.plan_dtypes``);
    ``image_encoder`` the CLIP vision encoder of Wan2.1 image to video (0: none)."""

    dit: float
    wide: float
    text_encoder: float
    vae: float
    image_encoder: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dit", "wide", "text_encoder", "vae", "image_encoder"):
            as_float(f"params.{name}", getattr(self, name), low=0)
        if self.wide > self.dit:
            raise ConfigError(f"params.wide ({self.wide}) cannot exceed params.dit ({self.dit})")


@dataclass(frozen=True)
class Architecture:
    """The DiT and VAE facts: attention ``heads`` of ``head_dim``, ``layers`` blocks with a ``ffn_dim``
    feed-forward, the DiT ``patch`` and the VAE ``vae_stride`` (frames, height, width), ``experts`` DiTs
    (Wan2.2 A14B: 2) and, where counted, the exact ``params``."""

    heads: int
    head_dim: int
    layers: int
    ffn_dim: int
    patch: tuple[int, int, int]
    vae_stride: tuple[int, int, int]
    experts: int = 1
    params: ParamCounts | None = None
    rope_max_seq_len: int = 1024
    """The DiT's rotary table: at most this many tokens along each axis (latent frames, rows, columns);
    diffusers' Wan default. A larger size fails inside the model, so requests are checked against it."""

    def __post_init__(self) -> None:
        for name in ("heads", "head_dim", "layers", "ffn_dim", "experts", "rope_max_seq_len"):
            as_int(f"arch.{name}", getattr(self, name), low=1)
        for name in ("patch", "vae_stride"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple) or len(value) != 3:
                raise ConfigError(f"arch.{name} must be three whole numbers (frames, height, width)")
            object.__setattr__(self, name, tuple(as_int(f"arch.{name}", v, low=1) for v in value))
        if self.patch[1] * self.vae_stride[1] != self.patch[2] * self.vae_stride[2]:
            raise ConfigError("arch: a token must cover as many pixels in height as in width")

    @property
    def dim(self) -> int:
        """The DiT's hidden width."""
        return self.heads * self.head_dim

    @property
    def pixels_per_token(self) -> int:
        """Pixels per token side: VAE stride times patch."""
        return self.vae_stride[1] * self.patch[1]

    @property
    def max_side(self) -> int:
        """The widest (and tallest) frame in pixels the rotary table covers."""
        return self.rope_max_seq_len * self.pixels_per_token

    @property
    def frames_per_latent(self) -> int:
        """Video frames per latent frame (the first frame has a latent frame of its own)."""
        return self.vae_stride[0]

    def tokens(self, width: int, height: int, frames: int) -> int:
        """Tokens one DiT call sees for a ``frames`` x ``height`` x ``width`` video."""
        latent_frames = (frames - 1) // self.frames_per_latent + 1
        side = self.pixels_per_token
        return (latent_frames // self.patch[0]) * (height // side) * (width // side)


@dataclass(frozen=True)
class TeaCacheCalibration:
    """The TeaCache criterion fitted for one model: the embedding its relative L1 is measured on
    (``temb``, or ``timestep_proj`` for the per-block modulation), the rescale polynomial (highest power
    first; empty: no rescaling) and the steps always computed at the start."""

    modulation: str
    coefficients: tuple[float, ...]
    warmup_steps: int

    def __post_init__(self) -> None:
        as_choice("teacache modulation", self.modulation, MODULATIONS)
        as_int("teacache warmup_steps", self.warmup_steps, low=0)
        coefficients = tuple(as_float("teacache coefficients", c) for c in self.coefficients)
        object.__setattr__(self, "coefficients", coefficients)


@dataclass(frozen=True)
class CacheFacts:
    """What the step caches know of one model: its TeaCache fit, its MagCache magnitude ratios (one per
    step of a 50-step run, the first 1.0) and its ``speeds``: per method, the thresholds the fast/faster
    presets mean on this model (methods without one use ``presets/speed.yaml``)."""

    teacache: TeaCacheCalibration | None = None
    mag_ratios: tuple[float, ...] | None = None
    speeds: dict[str, dict[str, float]] = field(default_factory=dict)


def parse_arch(data: dict[str, Any], *, where: str) -> Architecture:
    """Validate a card's ``arch`` mapping."""
    data = dict(data)
    with _located(where):
        if data.get("params") is not None:
            data["params"] = from_mapping(ParamCounts, data["params"], where=f"{where} arch.params")
        return from_mapping(Architecture, data, where=f"{where} arch")


def parse_caches(data: dict[str, Any], *, where: str) -> CacheFacts:
    """Validate a card's ``caches`` mapping."""
    data = dict(data)
    with _located(where):
        if data.get("teacache") is not None:
            teacache = data["teacache"]
            data["teacache"] = from_mapping(TeaCacheCalibration, teacache, where=f"{where} caches.teacache")
    if data.get("mag_ratios") is not None:
        ratios = data["mag_ratios"]
        data["mag_ratios"] = tuple(as_float(f"{where} caches.mag_ratios", r, low=0) for r in ratios)
    speeds = {}
    for method, table in (data.get("speeds") or {}).items():
        as_choice(f"{where} caches.speeds method", method, CACHE_METHODS)
        for preset, value in table.items():
            as_choice(f"{where} caches.speeds.{method} preset", preset, SPEED_PRESETS)
            as_float(f"{where} caches.speeds.{method}.{preset}", value, low=0)
        speeds[method] = dict(table)
    data["speeds"] = speeds
    return from_mapping(CacheFacts, data, where=f"{where} caches")


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix the card's location to a validation error that lacks it."""
    try:
        yield
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from error
