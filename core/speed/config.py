"""The user's speed options as one validated dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from core.validation import ConfigError, as_choice, from_mapping

ATTENTION_CHOICES = ("auto", "flash4", "flash", "cudnn", "sdpa")
"""``auto`` picks per GPU; the others name one backend (see ``core.speed.attention.BACKENDS``)."""

CompileSetting = bool | Literal["auto"]


@dataclass(frozen=True)
class SpeedConfig:
    """How to speed up the DiT. The defaults are lossless (same maths, faster kernels and compiled blocks).

    ``attention``: backend name or ``auto``. ``compile``: regional ``torch.compile`` of the repeated blocks,
    ``auto`` = on for CUDA GPUs, off on the CPU. ``fp8_linears``: fp8 rowwise linears (lossy, SM89+).
    ``turbo``: everything lossy that runs here (fp8 linears, 8-bit attention where installed).
    ``gelu_epilogue``: on CUDA, the feed-forward's tanh GELU runs in its GEMM's epilogue (lossless).
    ``fast_decode``: the VAE decodes in bfloat16 with channels-last convolutions and cuDNN autotuning
    (``core.speed.vae_decode``); ``auto`` = on for CUDA GPUs, off (float32, the pipeline's own maths) on
    the CPU. Every decode streams latent frame by latent frame into the mp4 writer, which encodes while
    the next frames decode. ``compile_decode``: regional ``torch.compile`` of the decoder's blocks (off
    until measured faster).
    """

    attention: str = "auto"
    compile: CompileSetting = "auto"
    fp8_linears: bool = False
    turbo: bool = False
    gelu_epilogue: bool = True
    fast_decode: CompileSetting = "auto"
    compile_decode: bool = False

    def __post_init__(self) -> None:
        as_choice("speed.attention", self.attention, ATTENTION_CHOICES)
        for name in ("compile", "fast_decode"):
            value = getattr(self, name)
            if value != "auto" and not isinstance(value, bool):
                raise ConfigError(f"speed.{name} must be true, false or 'auto'; got {value!r}")
        for name in ("fp8_linears", "turbo", "gelu_epilogue", "compile_decode"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"speed.{name} must be true or false; got {getattr(self, name)!r}")

    @property
    def wants_fp8_linears(self) -> bool:
        return self.fp8_linears or self.turbo

    @property
    def loaded_variant(self) -> SpeedConfig:
        """What changes the loaded pipeline: the decode options are applied per job (a bf16 decoder copy
        kept beside the VAE), so toggling them does not reload the model."""
        return replace(self, fast_decode="auto", compile_decode=False)


def parse_speed_config(data: Mapping[str, Any] | None) -> SpeedConfig:
    """A :class:`SpeedConfig` from loose input (UI, API, YAML); ``None`` gives the defaults."""
    return from_mapping(SpeedConfig, data or {}, where="speed")
