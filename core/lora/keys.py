"""A LoRA file's tensors in the form diffusers' Wan LoRA loader takes, its strength folded in, and what
shape of Wan DiT it was made for (to name the model an incompatible LoRA fits).

The formats people share: diffusers/PEFT (``transformer.blocks.N.attn1.to_q.lora_A.weight``, PEFT's
``base_model.model.`` prefix, kohya-style ``.alpha`` keys beside them), ComfyUI / original Wan
(``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` with ``.alpha``, ``.diff_b``: the lightx2v and
CausVid releases) and musubi (``lora_unet_``). diffusers converts the last two
(``WanLoraLoaderMixin.lora_state_dict``); the first is normalised here, its alpha folded as ``alpha/rank``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from diffusers import WanPipeline

from core.validation import ConfigError
from weights.registry import ModelCard, load_cards

UP_KEYS = ("lora_B", "lora_up", ".diff_b", ".diff")
"""Tensors a LoRA's output is linear in: scaling them scales its change to the model."""
BLOCK = re.compile(r"blocks\.(\d+)\.")


def _prefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give bare keys the prefix their naming implies (diffusers' loader keys on it)."""
    keys = list(state)
    if any(k.startswith("base_model.model.") for k in keys):
        return {"transformer." + k.removeprefix("base_model.model."): v for k, v in state.items()}
    if any(k.startswith(("diffusion_model.", "transformer.", "lora_unet_")) for k in keys):
        return state
    original = any(".self_attn." in k or ".cross_attn." in k for k in keys)
    prefix = "diffusion_model." if original else "transformer."
    return {prefix + k: v for k, v in state.items()}


def _fold_diffusers_alpha(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers-named keys with ``.alpha`` beside them: scale each ``lora_A`` by alpha/rank, drop alpha."""
    alphas = {k.removesuffix(".alpha"): v for k, v in state.items() if k.endswith(".alpha")}
    if not alphas or not any(k.startswith("transformer.") for k in state):
        return state
    out = {k: v for k, v in state.items() if not k.endswith(".alpha")}
    for module, alpha in alphas.items():
        down = out.get(f"{module}.lora_A.weight")
        if down is not None:
            out[f"{module}.lora_A.weight"] = down * (float(alpha) / down.shape[0])
    return out


def to_diffusers(state: dict[str, torch.Tensor], strength: float) -> dict[str, torch.Tensor]:
    """``state`` (any shared Wan LoRA format) as diffusers-named ``transformer.`` keys, rank and alpha
    applied, every output-side tensor multiplied by ``strength`` (0: adds exact zeros)."""
    state = _fold_diffusers_alpha(_prefixed(dict(state)))
    state = {k: v * strength if any(u in k for u in UP_KEYS) else v for k, v in state.items()}
    try:
        converted = WanPipeline.lora_state_dict(state)
    except (KeyError, ValueError, IndexError) as error:
        raise ConfigError(f"not a Wan LoRA in a known format ({type(error).__name__}: {error})") from error
    if not converted or not all("lora" in k for k in converted):
        raise ConfigError("not a Wan LoRA in a known format (no lora_A/lora_B or lora_down/lora_up keys)")
    return converted


@dataclass(frozen=True)
class LoraShape:
    """The DiT shape a LoRA was made for: model width, the blocks it touches and the FFN width."""

    dim: int | None
    blocks: int
    ffn_dim: int | None

    def describe(self) -> str:
        parts = [
            f"width {self.dim}" if self.dim else None,
            f"{self.blocks} blocks",
            f"FFN {self.ffn_dim}" if self.ffn_dim else None,
        ]
        return ", ".join(p for p in parts if p)


def lora_shape(converted: dict[str, torch.Tensor]) -> LoraShape:
    """What ``converted`` (diffusers keys) says of the model it was trained on."""
    dim = ffn = None
    blocks = 0
    for key, value in converted.items():
        found = BLOCK.search(key)
        if found:
            blocks = max(blocks, int(found.group(1)) + 1)
        if key.endswith("attn1.to_q.lora_A.weight"):
            dim = int(value.shape[1])
        if key.endswith("ffn.net.0.proj.lora_B.weight"):
            ffn = int(value.shape[0])
    return LoraShape(dim, blocks, ffn)


def model_shape(transformer: torch.nn.Module) -> LoraShape:
    """The same facts of a loaded Wan DiT."""
    config = transformer.config
    return LoraShape(
        config.num_attention_heads * config.attention_head_dim, config.num_layers, config.ffn_dim
    )


def fits(lora: LoraShape, model: LoraShape) -> bool:
    return (
        (lora.dim is None or lora.dim == model.dim)
        and lora.blocks <= model.blocks
        and (lora.ffn_dim is None or lora.ffn_dim == model.ffn_dim)
    )


def cards_fitting(lora: LoraShape) -> list[ModelCard]:
    """The text-to-video and continuation cards whose ``arch`` facts match ``lora``."""
    found = []
    for card in load_cards().values():
        arch = card.arch
        if arch is None or card.dev:
            continue
        if fits(lora, LoraShape(arch.heads * arch.head_dim, arch.layers, arch.ffn_dim)):
            found.append(card)
    return found


def check_fits(
    name: str, converted: dict[str, torch.Tensor], transformer: torch.nn.Module, card: ModelCard
) -> None:
    """Refuse a LoRA made for another shape of model, naming the models it fits."""
    lora, model = lora_shape(converted), model_shape(transformer)
    if fits(lora, model):
        return
    names = [c.name for c in cards_fitting(lora)]
    fit = f"it fits {', '.join(names)}" if names else "no model in presets/models/ has that shape"
    raise ConfigError(
        f"LoRA {name} was made for a different model ({lora.describe()}); {card.name} has "
        f"{model.describe()}: {fit}. Pick that model or another LoRA."
    )
