"""MAGI-1 DiT configuration, read from the published ``*_config.json`` (its ``model_config`` part).

The published configs (GitHub SandAI-org/MAGI-1 ``example/4.5B/4.5B_distill_config.json`` and friends) hold
three parts: ``model_config`` (architecture, :class:`MagiDiTConfig` here), ``runtime_config`` (sampling:
steps, window, cfg ranges, KV ranges; see :class:`core.magi.schedule.MagiRunConfig`) and ``engine_config``
(``distill``, ``fp8_quant``, parallelism). Real numbers, for the model cards:

==============  ======  ======  =====  ======  ====  =====  ========  =====  ============
variant         layers  hidden  heads  groups  head  ffn    glu       in ch  params
==============  ======  ======  =====  ======  ====  =====  ========  =====  ============
4.5B (all)      34      3072    24     8       128   12288  no, GELU  16     ~4.5 B
24B (all)       48      6144    48     8       128   16384  SwiGLU    32*    ~24 B
==============  ======  ======  =====  ======  ====  =====  ========  =====  ============

Shared: patch 2x2, temporal patch 1, cond ratio 0.25 (timestep/adaLN width hidden/4), T5 caption
channels 4096, caption length 800, layer norm eps 1e-6 with zero-centred gamma (``apply_layernorm_1p``),
bf16 params. (*) 24B has ``half_channel_vae``: 16-channel latents duplicated to 32, ``x_rescale_factor`` 0.1.
Runtime (all published variants): chunk_width 6 latent frames (24 video frames), window_size 4, clean_t
0.9999, noise2clean_kvrange [5, 4, 3, 2], clean_chunk_kvrange 1, VAE scale_factor 0.18215, 720x720 for
4.5B; base: cfg_number 3 with cfg_t_range [0, 0.0217, 0.1, 0.3, 0.999], prev_chunk_scales
[1.5, 1.5, 1.5, 1.0, 1.0], text_scales [7.5, 7.5, 7.5, 0, 0]; distill / distill_quant: cfg_number 1,
shortcut steps 64/32/16/8 (12 special), published ``num_steps`` 64 (24B distill: 16).
Hub weights: ``sand-ai/MAGI-1`` ``ckpt/magi/<variant>/inference_weight[.fp8][.distill]/`` (sharded
safetensors + ``model.safetensors.index.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from core.validation import ConfigError, as_float, as_int, from_mapping

VARIANTS = (
    "4.5B_base",
    "4.5B_distill",
    "4.5B_distill_quant",
    "24B_base",
    "24B_distill",
    "24B_distill_quant",
)
_DTYPES = ("torch.bfloat16", "torch.float16", "torch.float32")


@dataclass(frozen=True)
class MagiDiTConfig:
    """Architecture of one MAGI-1 DiT, field names exactly as the published ``model_config``."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    model_name: str = "videodit_ardf"
    layernorm_epsilon: float = 1e-6
    apply_layernorm_1p: bool = True
    x_rescale_factor: float = 1.0
    half_channel_vae: bool = False
    params_dtype: str = "torch.bfloat16"
    patch_size: int = 2
    t_patch_size: int = 1
    in_channels: int = 16
    out_channels: int = 16
    cond_hidden_ratio: float = 0.25
    caption_channels: int = 4096
    caption_max_length: int = 800
    xattn_cond_hidden_ratio: float = 1.0
    cond_gating_ratio: float = 1.0
    gated_linear_unit: bool = False
    distill: bool = False
    fp8_quant: bool = False

    def __post_init__(self) -> None:
        for name in (
            "num_layers",
            "hidden_size",
            "ffn_hidden_size",
            "num_attention_heads",
            "num_query_groups",
            "kv_channels",
            "patch_size",
            "t_patch_size",
            "in_channels",
            "out_channels",
            "caption_channels",
            "caption_max_length",
        ):
            as_int(f"model_config.{name}", getattr(self, name), low=1)
        for name in ("cond_hidden_ratio", "xattn_cond_hidden_ratio", "cond_gating_ratio", "x_rescale_factor"):
            as_float(f"model_config.{name}", getattr(self, name), low=1e-6)
        as_float("model_config.layernorm_epsilon", self.layernorm_epsilon, low=0.0)
        if self.params_dtype not in _DTYPES:
            raise ConfigError(f"model_config.params_dtype must be one of {', '.join(_DTYPES)}")
        if self.num_attention_heads % self.num_query_groups:
            raise ConfigError("model_config.num_attention_heads must be a multiple of num_query_groups")
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 8:
            raise ConfigError("model_config.hidden_size / num_attention_heads must be a multiple of 8 (rope)")
        if (self.num_attention_heads * self.kv_channels) % 8:
            raise ConfigError("model_config.num_attention_heads * kv_channels must be a multiple of 8")
        if self.half_channel_vae and self.in_channels != 2 * self.latent_channels:
            raise ConfigError("model_config.half_channel_vae needs in_channels == 2 * 16")

    @property
    def cond_size(self) -> int:
        """Width of the timestep / adaLN condition vector."""
        return int(self.hidden_size * self.cond_hidden_ratio)

    @property
    def latent_channels(self) -> int:
        """Channels of the VAE latents the model takes (16 even where the DiT doubles them)."""
        return 16 if self.half_channel_vae else self.in_channels

    @property
    def rope_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def is_quantized_layer(self, layer: int) -> bool:
        """fp8 checkpoints keep the first and last layer in bf16, as published."""
        return self.fp8_quant and 0 < layer < self.num_layers - 1

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "MAGI-1 config") -> MagiDiTConfig:
        """From a whole published config (``model_config`` + ``engine_config``) or a bare model part."""
        if "model_config" in data:
            model = dict(data["model_config"])
            engine = data.get("engine_config", {}) or {}
            model.setdefault("distill", bool(engine.get("distill", False)))
            model.setdefault("fp8_quant", bool(engine.get("fp8_quant", False)))
            return from_mapping(cls, model, where=f"{where} model_config")
        return from_mapping(cls, data, where=where)

    @classmethod
    def from_json(cls, path: Path) -> MagiDiTConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read MAGI-1 config {path}: {error}") from error
        return cls.from_dict(data, where=str(path))

    def model_config_dict(self) -> dict[str, Any]:
        """The published ``model_config`` part (without our engine flags)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("distill", "fp8_quant")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_4_5B = dict(
    num_layers=34,
    hidden_size=3072,
    ffn_hidden_size=12288,
    num_attention_heads=24,
    num_query_groups=8,
    kv_channels=128,
    in_channels=16,
    out_channels=16,
    gated_linear_unit=False,
    x_rescale_factor=1.0,
)
_24B = dict(
    num_layers=48,
    hidden_size=6144,
    ffn_hidden_size=16384,
    num_attention_heads=48,
    num_query_groups=8,
    kv_channels=128,
    in_channels=32,
    out_channels=32,
    gated_linear_unit=True,
    x_rescale_factor=0.1,
    half_channel_vae=True,
)


def preset(variant: str) -> MagiDiTConfig:
    """The published architecture of ``variant`` (one of :data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown MAGI-1 variant {variant!r}; known: {', '.join(VARIANTS)}")
    size, _, kind = variant.partition("_")
    base = _4_5B if size == "4.5B" else _24B
    return MagiDiTConfig(**base, distill="distill" in kind, fp8_quant=kind.endswith("quant"))


def weight_subdir(config: MagiDiTConfig) -> str:
    """Folder of the DiT weights inside a variant folder, as the official loader names it."""
    return "inference_weight" + (".fp8" if config.fp8_quant else "") + (".distill" if config.distill else "")
