"""A tiny random MAGI-1 DiT in the published checkpoint layout, for tests and ``--dev``.

``build_tiny_magi_dit(folder, variant)`` writes ``folder/config.json`` (the published three-part config
format: ``model_config``, ``runtime_config``, ``engine_config``) and the weights where the official loader
looks for them, ``folder/inference_weight[.fp8][.distill]/``, as two safetensors shards with
``model.safetensors.index.json``. Tensor names and dtypes follow the published model (bf16 blocks, float32
embedders); quant variants store the inner layers' linears as fp8 with their scales.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.magi.config import MagiDiTConfig, preset, weight_subdir
from core.magi.dit import MagiDiT, keeps_float32
from core.magi.loading import INDEX

TINY_SIZES = dict(
    num_layers=3,
    hidden_size=64,
    ffn_hidden_size=128,
    num_attention_heads=4,
    num_query_groups=2,
    kv_channels=16,
    caption_channels=32,
    caption_max_length=64,
)
PER_TENSOR = ("linear_qkv.q", "linear_qkv.qx", "linear_qkv.k", "linear_qkv.v", "mlp.linear_fc1")
PER_CHANNEL = ("self_attention.linear_proj", "mlp.linear_fc2")


def tiny_config(variant: str = "4.5B_distill") -> MagiDiTConfig:
    """The published architecture flags of ``variant`` at tiny sizes."""
    published = preset(variant).as_dict()
    published.update(TINY_SIZES)
    return MagiDiTConfig(**published)


def _published_config(config: MagiDiTConfig) -> dict:
    runtime = {
        "cfg_number": 1 if config.distill else 3,
        "noise2clean_kvrange": [5, 4, 3, 2],
        "clean_chunk_kvrange": 1,
        "clean_t": 0.9999,
        "num_steps": 8 if config.distill else 16,
        "window_size": 4,
        "chunk_width": 6,
        "scale_factor": 0.18215,
        "temporal_downsample_factor": 4,
    }
    engine = {"fp8_quant": config.fp8_quant, "distill": config.distill, "shortcut_mode": "8,16,16"}
    return {"model_config": config.model_config_dict(), "runtime_config": runtime, "engine_config": engine}


def _quantize(name: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """fp8 ``[1, out, in]`` weight and scales that dequantize back to about ``weight``."""
    owner = name.removesuffix(".weight")
    scale = weight.abs().max().clamp(min=1e-8) / 448.0
    out = {name: (weight / scale).to(torch.float8_e4m3fn)[None], f"{owner}.weight_scale": scale.reshape(1)}
    if owner.endswith(PER_CHANNEL):
        out[f"{owner}.input_scale"] = torch.ones(1)
        out[f"{owner}.smooth_scale"] = torch.ones(1, weight.shape[1])
    else:
        out[f"{owner}.input_scale"] = torch.ones(weight.shape[1])
    return out


def random_state(config: MagiDiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the published names, shapes and dtypes (fp8 where the variant has it)."""
    generator = torch.Generator().manual_seed(seed)
    model = MagiDiT(config)
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "rope.bands":
            value = tensor.clone()
        else:
            value = torch.randn(tensor.shape, generator=generator) * (0.1 if tensor.dim() < 2 else 0.05)
        layer = name.split(".")[2] if name.startswith("videodit_blocks.layers.") else None
        quantized = layer is not None and config.is_quantized_layer(int(layer))
        owner = name.removesuffix(".weight")
        if quantized and name.endswith(".weight") and owner.endswith(PER_TENSOR + PER_CHANNEL):
            state.update(_quantize(name, value))
            continue
        state[name] = value.to(torch.float32 if keeps_float32(name) else torch.bfloat16)
    return state


def build_tiny_magi_dit(folder: Path, variant: str = "4.5B_distill") -> Path:
    """Write a tiny random ``variant`` DiT to ``folder`` in the published layout; returns ``folder``."""
    folder = Path(folder)
    config = tiny_config(variant)
    weights = folder / weight_subdir(config)
    weights.mkdir(parents=True, exist_ok=True)
    state = random_state(config)
    names = sorted(state)
    halves = (names[: len(names) // 2], names[len(names) // 2 :])
    weight_map = {}
    for number, part in enumerate(halves, start=1):
        shard = f"model-{number:05d}-of-{len(halves):05d}.safetensors"
        save_file({n: state[n].contiguous() for n in part}, str(weights / shard))
        weight_map.update(dict.fromkeys(part, shard))
    total = sum(t.numel() * t.element_size() for t in state.values())
    (weights / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(_published_config(config), indent=2))
    return folder
