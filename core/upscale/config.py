"""Architecture and streaming settings of FlashVSR, with the real v1.1 sizes as defaults.

The official files carry no config: the defaults here are the real v1.1 sizes, and a folder may override
them with a ``flashvsr_config.json`` next to the weights (our tiny test model writes one). Loading is
strict, so weights of other sizes fail with the names and shapes that differ.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.validation import as_float, as_int, from_mapping

DIT_FILE = "diffusion_pytorch_model_streaming_dmd.safetensors"
LQ_PROJ_FILE = "LQ_proj_in.ckpt"
TC_DECODER_FILE = "TCDecoder.ckpt"
VAE_FILE = "Wan2.1_VAE.pth"
PROMPT_FILE = "posi_prompt.pth"
CONFIG_FILE = "flashvsr_config.json"
VARIANTS = ("tiny-long", "full")


@dataclass(frozen=True)
class DiTConfig:
    """The Wan2.1-1.3B DiT that FlashVSR fine-tunes (patch 1x2x2, 16 latent channels)."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class LQProjectionConfig:
    """Causal LQ projection: 16x16 pixel shuffle, two causal 3D convs (time /4), one linear per layer fed."""

    in_dim: int = 3
    out_dim: int = 1536
    hidden_dim1: int = 2048
    hidden_dim2: int = 3072
    layer_num: int = 1
    patch: int = 16


@dataclass(frozen=True)
class TCDecoderConfig:
    """Tiny conditional decoder (TAEHV-style): latents plus the 8x8x4 pixel-shuffled LQ frames."""

    channels: tuple[int, int, int, int] = (512, 256, 128, 128)
    latent_channels: int = 16 + 768


@dataclass(frozen=True)
class SparsityConfig:
    """Locality-constrained sparse attention settings of the official v1.1 inference scripts."""

    local_range: int = 11
    sparse_ratio: float = 2.0
    kv_ratio: float = 3.0

    def __post_init__(self) -> None:
        as_int("local_range", self.local_range, low=1, high=64)
        as_float("sparse_ratio", self.sparse_ratio, low=0.1, high=100.0)
        as_float("kv_ratio", self.kv_ratio, low=1.0, high=64.0)

    def topk(self, windows_per_slab: int, height: int, width: int) -> int:
        """Key windows kept per query slab: the official ``sparse_ratio * 768*1280 / (H*W)`` rule."""
        ratio = self.sparse_ratio * 768 * 1280 / (height * width)
        return int(windows_per_slab * windows_per_slab * ratio) - 1


@dataclass(frozen=True)
class FlashVSRConfig:
    """Everything needed to build the modules for a weights folder."""

    dit: DiTConfig = field(default_factory=DiTConfig)
    lq_projection: LQProjectionConfig = field(default_factory=LQProjectionConfig)
    tc_decoder: TCDecoderConfig = field(default_factory=TCDecoderConfig)
    vae: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlashVSRConfig:
        tc = dict(data.get("tc_decoder", {}))
        if "channels" in tc:
            tc["channels"] = tuple(tc["channels"])
        return cls(
            dit=from_mapping(DiTConfig, data.get("dit", {}), where="flashvsr dit config"),
            lq_projection=from_mapping(
                LQProjectionConfig, data.get("lq_projection", {}), where="flashvsr lq config"
            ),
            tc_decoder=from_mapping(TCDecoderConfig, tc, where="flashvsr decoder config"),
            vae=dict(data.get("vae", {})),
        )


def read_config(folder: Path) -> FlashVSRConfig:
    """The folder's ``flashvsr_config.json`` if present, else the real v1.1 sizes."""
    path = Path(folder) / CONFIG_FILE
    if path.is_file():
        return FlashVSRConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return FlashVSRConfig()
