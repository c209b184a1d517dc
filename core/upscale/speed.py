"""Speed options of FlashVSR streaming (issue 31), each switchable on its own; the defaults change nothing.

- ``attention``: ``sparse`` (LCSA block-sparse with our Triton kernel, official maths), ``flex`` (the same
  block mask through PyTorch's FlexAttention) or ``dense`` (plain SDPA over every cached window; a
  different output: no top-k selection).
- ``compile``: regional ``torch.compile`` of the DiT blocks' dense parts and the TC decoder (same maths);
  ``auto``: on CUDA GPUs only (as the DiT's compile of text to video).
- ``cuda_graphs``: compile's ``reduce-overhead`` mode; the fixed-shape steady chunk replays CUDA graphs.
- ``kv_cache``: cached K/V windows in the model dtype (``model``) or fp8 e4m3 with a scale per token and
  head (``fp8``: half the bytes, lossy).
- ``kv_prefetch``: with the KV cache in host memory, the next layer's copy runs on a side stream.
- ``overlap_decode``: decode, colour fix and read-back of chunk n on a side stream while chunk n+1 runs.

:func:`parse_vsr_speed` builds one from a mapping, refusing bad values with what to use instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.validation import ConfigError, as_choice, from_mapping

ATTENTION_MODES = ("sparse", "flex", "dense")
KV_STORAGES = ("model", "fp8")


@dataclass(frozen=True)
class VSRSpeed:
    """Which speed options run; see the module docstring. ``cuda_graphs`` needs ``compile``."""

    attention: str = "sparse"
    compile: bool | str = False
    cuda_graphs: bool = False
    kv_cache: str = "model"
    kv_prefetch: bool = False
    overlap_decode: bool = False

    def __post_init__(self) -> None:
        as_choice("attention", self.attention, ATTENTION_MODES)
        as_choice("kv_cache", self.kv_cache, KV_STORAGES)
        for name in ("cuda_graphs", "kv_prefetch", "overlap_decode"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.compile, bool) and self.compile != "auto":
            raise ConfigError(f"compile must be true, false or auto, got {self.compile!r}")
        if self.cuda_graphs and not self.compile:
            raise ConfigError("cuda_graphs runs through torch.compile: turn compile on too")

    @property
    def lossless(self) -> bool:
        """True when the output is the official maths (other kernels may round differently)."""
        return self.attention != "dense" and self.kv_cache == "model"

    def record(self) -> dict[str, Any]:
        """JSON-ready, for the generation record."""
        return asdict(self) | {"lossless": self.lossless}


def parse_vsr_speed(data: Mapping[str, Any] | None) -> VSRSpeed:
    """A :class:`VSRSpeed` from a mapping of its fields (missing ones take the defaults)."""
    return from_mapping(VSRSpeed, {**asdict(VSRSpeed()), **dict(data or {})}, where="flashvsr speed")


ALL_ON = VSRSpeed(
    attention="dense", compile=True, cuda_graphs=True, kv_cache="fp8", kv_prefetch=True, overlap_decode=True
)
"""Every option on (the bench's "all" row)."""

DEFAULT_SPEED = VSRSpeed(compile="auto", overlap_decode=True)
"""What the Upscale tab runs: the options bench/upscale_speed.py measured faster and lossless on a GPU
(H100, x4 to 1408x768, a 10 s clip, docs/benchmarks.md): compile (on CUDA) and the decode overlap, 24.4 ->
36.2 fps overall and 12.9 -> 11.2 GiB, first run compiling for about 30 s. Off: CUDA graphs (slower overall
with overlap: 32.0 fps), the KV prefetch (for the offloaded cache only), and what changes the output
(fp8 KV, dense attention; flex is the same maths but slower)."""
