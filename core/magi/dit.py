"""The MAGI-1 video DiT (``VideoDiTModel`` of SandAI-org/MAGI-1), our implementation.

Module names match the published checkpoint: ``x_embedder`` (Conv3d patchify, no bias), ``t_embedder``,
``y_embedder``, ``rope``, ``videodit_blocks.layers.N.*``, ``videodit_blocks.final_layernorm``,
``final_linear.linear``. Time runs from 0 (noise) to 1 (clean); the model predicts the velocity
``clean - noise`` of every chunk it is given. The distilled variants add the embedding of their shortcut
step size to the timestep embedding (:func:`core.magi.schedule.shortcut_size`).

:meth:`MagiDiT.forward` processes the slots of a :class:`~core.magi.attention.ForwardPlan`. Slots named in
``reuse`` are not computed: their output and per-layer keys / values come from the caller (the FlowCache
hook), and computed slots attend to those keys / values. :meth:`MagiDiT.modulated_input` gives the cheap
per-slot features such a hook decides on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from core.magi.attention import ForwardPlan
from core.magi.config import MagiDiTConfig
from core.magi.kv_cache import KV, ChunkKVCache
from core.magi.layers import (
    CaptionEmbedder,
    FinalLinear,
    TimestepEmbedder,
    TransformerLayer,
    ZeroCenteredLayerNorm,
)
from core.magi.rope import LearnableRope, apply_rope

HIGH_PRECISION_PREFIXES = ("x_embedder.", "t_embedder.", "y_embedder.", "final_linear.", "rope.")
HIGH_PRECISION_PARTS = (
    ".q_layernorm.",
    ".k_layernorm.",
    "self_attn_post_norm.",
    "mlp_post_norm.",
    "final_layernorm.",
)


def keeps_float32(name: str) -> bool:
    """Parameters the published model promotes to float32 whatever the compute dtype."""
    return name.startswith(HIGH_PRECISION_PREFIXES) or any(part in name for part in HIGH_PRECISION_PARTS)


@dataclass
class SlotReuse:
    """What a hook supplies for a slot it skips: its velocity and its keys/values in every layer."""

    output: torch.Tensor
    kv: list[KV]


@dataclass
class DiTOutput:
    velocity: torch.Tensor
    kv: dict[int, list[KV]] = field(default_factory=dict)


class TransformerBlock(nn.Module):
    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.final_layernorm = ZeroCenteredLayerNorm(config.hidden_size, config)


class MagiDiT(nn.Module):
    """MAGI-1 DiT. ``x`` is latent ``[B, C, slots * chunk_frames, h, w]``; ``timesteps`` ``[B, slots]``."""

    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        self.config = config
        patch = (config.t_patch_size, config.patch_size, config.patch_size)
        self.x_embedder = nn.Conv3d(config.in_channels, config.hidden_size, patch, stride=patch, bias=False)
        self.t_embedder = TimestepEmbedder(config)
        self.y_embedder = CaptionEmbedder(config)
        self.rope = LearnableRope(config.rope_dim)
        self.videodit_blocks = TransformerBlock(config)
        self.final_linear = FinalLinear(config)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.videodit_blocks.layers[0].self_attention.linear_qkv.q.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.x_embedder.weight.device

    def null_caption(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned null caption ``[1, L, D]`` and its mask (first 50 tokens), as the official pipeline."""
        caption = self.y_embedder.null_caption_embedding.detach()[None].float()
        mask = torch.zeros(1, caption.shape[1], dtype=torch.bool, device=caption.device)
        mask[:, :50] = True
        return caption, mask

    def _slot_latents(self, x: torch.Tensor, slots: int, positions: list[int]) -> torch.Tensor:
        per_slot = x.unflatten(2, (slots, -1))
        return per_slot[:, :, positions].flatten(2, 3)

    def _embed(self, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patch tokens ``[B, tokens, D]`` (float) and the token grid (frames, rows, cols)."""
        x = latents.float() * self.config.x_rescale_factor
        if self.config.half_channel_vae:
            x = torch.cat([x, x], dim=1)
        x = self.x_embedder(x.to(self.x_embedder.weight.dtype))
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2).float(), grid

    def _conditions(self, timesteps: torch.Tensor, null_adaln: bool, shortcut: float | None) -> torch.Tensor:
        """``[B, slots, cond]`` adaLN condition: timestep (+ shortcut size) embedding + caption vector."""
        flat = timesteps.to(self.device).float().flatten()
        embedded = self.t_embedder(flat, self.compute_dtype).float()
        if shortcut is not None:
            embedded = embedded + self.t_embedder(torch.full_like(flat, shortcut), self.compute_dtype).float()
        embedded = embedded + self.y_embedder.adaln(null_adaln).float()
        return embedded.unflatten(0, timesteps.shape).to(self.compute_dtype)

    def _rope(self, plan: ForwardPlan, positions: list[int], grid: tuple[int, int, int]):
        frames_per_slot = grid[0] // len(positions)
        starts = [plan.slots[p].frame_start // self.config.t_patch_size for p in positions]
        frames = torch.cat([torch.arange(s, s + frames_per_slot) for s in starts])
        return self.rope.table(frames, grid[1], grid[2])

    @torch.no_grad()
    def modulated_input(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        plan: ForwardPlan,
        *,
        null_adaln: bool = False,
        shortcut: float | None = None,
    ) -> list[torch.Tensor]:
        """Per slot, the first layer's normed input scaled by ``1 + its attention gate`` ``[B, tokens, D]``.

        MAGI-1 modulates only through gates, so this is its analogue of the timestep-modulated input that
        TeaCache / FlowCache compare between steps; it costs one patch embedding and one small linear.
        """
        tokens, _ = self._embed(x)
        condition = self._conditions(timesteps, null_adaln, shortcut)
        first = self.videodit_blocks.layers[0]
        gate, _ = first.ada_modulate_layer.gates(condition)
        normed = first.self_attention.linear_qkv.layer_norm(tokens.to(self.compute_dtype)).float()
        features = normed.unflatten(1, (len(plan.slots), -1)) * (1 + gate[:, :, None, :])
        return list(features.unbind(1))

    @torch.no_grad()
    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        caption: torch.Tensor,
        caption_mask: torch.Tensor,
        plan: ForwardPlan,
        *,
        kv_cache: ChunkKVCache | None = None,
        null_adaln: bool = False,
        shortcut: float | None = None,
        reuse: Mapping[int, SlotReuse] | None = None,
        collect_kv: bool = False,
    ) -> DiTOutput:
        """Velocity of every slot.

        ``caption [B, rows, L, D]`` (or ``[B, L, D]``) and ``caption_mask [B, rows, L]`` hold the caption
        rows the slots name; ``null_adaln`` selects the unconditional adaLN caption vector. Keys/values of
        the slots in ``plan.store`` (and of every computed slot with ``collect_kv``) come back per layer.
        """
        reuse = dict(reuse or {})
        slots = len(plan.slots)
        if timesteps.dim() == 1:
            timesteps = timesteps[None].expand(x.shape[0], -1)
        if timesteps.shape[1] != slots or x.shape[2] % slots:
            raise ValueError(f"{slots} slots need {slots} timesteps and a frame count divisible by {slots}")
        if caption.dim() == 3:
            caption, caption_mask = caption[:, None], caption_mask[:, None]
        if plan.cached and kv_cache is None:
            raise ValueError("the plan reads cached chunks but no kv_cache was given")
        computed = [p for p in range(slots) if p not in reuse]
        frames = x.shape[2] // slots
        outputs: dict[int, torch.Tensor] = {p: reuse[p].output for p in reuse}
        kv_out: dict[int, list[KV]] = {}
        if computed:
            velocity, kv_out = self._compute(
                x,
                timesteps,
                caption,
                caption_mask,
                plan,
                computed,
                kv_cache,
                null_adaln,
                shortcut,
                reuse,
                collect_kv,
            )
            for index, position in enumerate(computed):
                outputs[position] = velocity[:, :, index * frames : (index + 1) * frames]
        for position in plan.store:
            if position in reuse:
                kv_out[position] = list(reuse[position].kv)
        ordered = [outputs[p].to(device=x.device, dtype=torch.float32) for p in range(slots)]
        return DiTOutput(velocity=torch.cat(ordered, dim=2), kv=kv_out)

    def _compute(
        self,
        x,
        timesteps,
        caption,
        caption_mask,
        plan,
        computed,
        kv_cache,
        null_adaln,
        shortcut,
        reuse,
        collect_kv,
    ) -> tuple[torch.Tensor, dict[int, list[KV]]]:
        dtype = self.compute_dtype
        tokens, grid = self._embed(self._slot_latents(x.to(self.device), len(plan.slots), computed))
        hidden = tokens.to(dtype)
        condition = self._conditions(timesteps[:, computed], null_adaln, shortcut)
        rope = self._rope(plan, computed, grid)
        caption_tokens = self.y_embedder.tokens(caption.to(self.device).float()).to(dtype)
        mask = caption_mask.to(self.device).bool()
        keep = set(computed) if collect_kv else set(plan.store) & set(computed)
        kv_out: dict[int, list[KV]] = {p: [] for p in keep}
        sample = _query_sample(plan, computed, hidden.shape[1] // len(computed), kv_cache)
        for index, layer in enumerate(self.videodit_blocks.layers):
            if sample is not None:
                kv_cache.observe_queries(index, _queries(layer, hidden, rope, sample))
            slot_kv = [reuse[p].kv[index] if p in reuse else None for p in range(len(plan.slots))]
            cached = kv_cache.gather(index, plan.cached) if plan.cached else (None, None, [])
            caption_kv = layer.self_attention.caption_keys_values(caption_tokens)
            hidden, fresh = layer(
                hidden, condition, rope, slot_kv, cached, (*caption_kv, mask), plan, computed
            )
            for position in keep:
                kv_out[position].append(fresh[position])
        hidden = self.videodit_blocks.final_layernorm(hidden.float())
        return self._unpatchify(self.final_linear(hidden).float(), grid), kv_out

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        config = self.config
        frames, rows, cols = grid
        pt, p = config.t_patch_size, config.patch_size
        x = tokens.reshape(tokens.shape[0], frames, rows, cols, pt, p, p, config.out_channels)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(
            tokens.shape[0], config.out_channels, frames * pt, rows * p, cols * p
        )
        if config.half_channel_vae:
            x = x[:, : config.latent_channels]
        return x / config.x_rescale_factor


def _query_sample(
    plan: ForwardPlan, computed: list[int], slot_tokens: int, kv_cache: ChunkKVCache | None
) -> torch.Tensor | None:
    """Token indices (among the computed tokens) of an even sample of the newest computed slot that
    attends earlier chunks, when this call stores a finished chunk and the cache's policy asks for queries."""
    if kv_cache is None or not kv_cache.query_tokens or not plan.store:
        return None
    attending = [i for i, p in enumerate(computed) if plan.slots[p].keys[0] < len(plan.cached) + p]
    if not attending:
        return None
    count = min(kv_cache.query_tokens, slot_tokens)
    offsets = torch.linspace(0, slot_tokens - 1, count).round().long().unique()
    return attending[-1] * slot_tokens + offsets


def _queries(layer, hidden: torch.Tensor, rope, sample: torch.Tensor) -> torch.Tensor:
    """Rotated self-attention queries ``[B, heads, len(sample), hd]`` of the sampled tokens, as the layer
    computes them from its input ``hidden``."""
    attention = layer.self_attention
    sample = sample.to(hidden.device)
    normed = attention.linear_qkv.layer_norm(hidden[:, sample])
    query = attention.q_layernorm(attention._heads(attention.linear_qkv.q(normed), attention.heads).float())
    return apply_rope(query, rope[0][sample], rope[1][sample]).to(normed.dtype).transpose(1, 2)
