"""Wan2.1 T2V DiT configs for the benches: ``transformer/config.json`` of
``Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers``. The SkyReels-V2 DF models add fps injection to the same shapes."""

from __future__ import annotations

from typing import Any

WAN_COMMON: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
WAN_SIZES: dict[str, dict[str, int]] = {
    "1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "14b": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
}


def wan_config(size: str) -> dict[str, Any]:
    """``WanTransformer3DModel`` keyword arguments of the Wan2.1 DiT of ``size`` (``1.3b`` or ``14b``)."""
    return {**WAN_COMMON, **WAN_SIZES[size]}
