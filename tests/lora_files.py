"""Tiny LoRA files in the key formats people share, built from the tiny Wan DiT's module names."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}
FORMATS = ("diffusers", "peft", "comfyui", "lightx2v", "causvid")


def tiny_lora(
    fmt: str,
    *,
    dim: int = 32,
    ffn: int = 64,
    layers: int = 2,
    rank: int = 4,
    alpha: float = 8.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random LoRA on every block's self- and cross-attention and FFN in format ``fmt``."""
    gen = torch.Generator().manual_seed(seed)

    def pair(inp: int, out: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(rank, inp, generator=gen) * 0.3, torch.randn(out, rank, generator=gen) * 0.3

    state: dict[str, torch.Tensor] = {}
    for i in range(layers):
        modules = [(f"self_attn.{o}", f"attn1.{c}", dim, dim) for o, c in ATTN.items()]
        modules += [(f"cross_attn.{o}", f"attn2.{c}", dim, dim) for o, c in ATTN.items()]
        modules += [("ffn.0", "ffn.net.0.proj", dim, ffn), ("ffn.2", "ffn.net.2", ffn, dim)]
        for original, diffusers, inp, out in modules:
            down, up = pair(inp, out)
            if fmt in ("diffusers", "peft"):
                base = (
                    "transformer." if fmt == "diffusers" else "base_model.model."
                ) + f"blocks.{i}.{diffusers}"
                state[f"{base}.lora_A.weight"], state[f"{base}.lora_B.weight"] = down, up
                if fmt == "diffusers":
                    state[f"{base}.alpha"] = torch.tensor(alpha)
                continue
            base = f"diffusion_model.blocks.{i}.{original}"
            names = ("lora_A", "lora_B") if fmt == "lightx2v" else ("lora_down", "lora_up")
            state[f"{base}.{names[0]}.weight"], state[f"{base}.{names[1]}.weight"] = down, up
            state[f"{base}.alpha"] = torch.tensor(alpha)
            if fmt in ("lightx2v", "causvid"):
                state[f"{base}.diff_b"] = torch.randn(out, generator=gen) * 0.1
        if fmt in ("lightx2v", "causvid"):
            state[f"diffusion_model.blocks.{i}.norm3.diff"] = torch.zeros(dim)
    return state


def write_lora(folder: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
