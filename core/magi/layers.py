"""Building blocks of the MAGI-1 DiT, named exactly as the published checkpoint's modules.

A transformer layer is a *parallel attention block*: one pre-norm feeds self-attention (QK-norm, rope,
grouped-query heads, block-causal over chunks) and caption cross-attention side by side; both outputs are
concatenated and projected together. Residual branches are *sandwich normed*: the branch output is gated
by a softcapped (tanh) adaLN gate of the chunk's condition, layer-normed (``*_post_norm``), then added.
The FFN is GELU (4.5B) or SwiGLU (24B). Layer norms marked zero-centred store ``gamma - 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.magi.attention import ForwardPlan, block_attention, caption_attention
from core.magi.config import MagiDiTConfig
from core.magi.kv_cache import KV
from core.magi.rope import apply_rope

SOFTCAP = 1.0
FREQUENCY_SIZE = 256
TIMESTEP_SCALE = 1000.0
PROJ_GROUPS = 8


class ZeroCenteredLayerNorm(nn.Module):
    """Layer norm whose weight is stored as ``gamma - 1`` when ``apply_layernorm_1p`` (the published one)."""

    def __init__(self, size: int, config: MagiDiTConfig) -> None:
        super().__init__()
        self.eps = config.layernorm_epsilon
        self.offset = 1.0 if config.apply_layernorm_1p else 0.0
        self.weight = nn.Parameter(torch.zeros(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.weight.to(x.dtype) + self.offset).to(x.dtype)
        return F.layer_norm(x, x.shape[-1:], weight, self.bias.to(x.dtype), self.eps)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of ``t * 1000`` followed by a two-layer MLP (``mlp.0``, ``mlp.2``)."""

    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        size = config.cond_size
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_SIZE, size), nn.SiLU(), nn.Linear(size, size))

    def forward(self, t: torch.Tensor, round_to: torch.dtype) -> torch.Tensor:
        """Embedding of ``t [N]``; the sinusoids are rounded to ``round_to`` first, as published."""
        half = FREQUENCY_SIZE // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t.float()[:, None] * freqs[None] * TIMESTEP_SCALE
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(embedding.to(round_to).to(self.mlp[0].weight.dtype))


class CaptionEmbedder(nn.Module):
    """Caption tokens for cross-attention, and the adaLN caption vector (a learned null-caption row)."""

    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        channels = config.caption_channels
        self.y_proj_xattn = nn.Sequential(
            nn.Linear(channels, int(config.hidden_size * config.xattn_cond_hidden_ratio)), nn.SiLU()
        )
        self.y_proj_adaln = nn.Sequential(nn.Linear(channels, config.cond_size))
        self.null_caption_embedding = nn.Parameter(torch.zeros(config.caption_max_length, channels))

    def tokens(self, caption: torch.Tensor) -> torch.Tensor:
        return self.y_proj_xattn(caption.to(self.y_proj_xattn[0].weight.dtype))

    def adaln(self, dropped: bool) -> torch.Tensor:
        """The adaLN caption vector: null row -1 for a dropped (unconditional) caption, -2 otherwise."""
        row = self.null_caption_embedding[-1 if dropped else -2]
        return self.y_proj_adaln(row[None])[0]


class FinalLinear(nn.Module):
    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        size = config.patch_size**2 * config.t_patch_size * config.out_channels
        self.linear = nn.Linear(config.hidden_size, size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.to(self.linear.weight.dtype))


class AdaModulateLayer(nn.Module):
    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        self.act = nn.SiLU()
        self.proj = nn.Sequential(
            nn.Linear(config.cond_size, int(config.hidden_size * config.cond_gating_ratio * 2))
        )

    def gates(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softcapped attention and MLP gates, float, from ``condition [B, slots, cond]``."""
        out = self.proj(self.act(condition.to(self.proj[0].weight.dtype)))
        out = (SOFTCAP * torch.tanh(out.float() / SOFTCAP)).to(out.dtype).float()
        attention_gate, mlp_gate = out.chunk(2, dim=-1)
        return attention_gate, mlp_gate


class LayerNormLinear(nn.Module):
    """``linear_qkv``: the shared pre-norm and the q (self), qx (cross), k and v projections."""

    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        q_size = config.kv_channels * config.num_attention_heads
        kv_size = config.kv_channels * config.num_query_groups
        self.layer_norm = nn.LayerNorm(hidden, eps=config.layernorm_epsilon)
        self.q = nn.Linear(hidden, q_size, bias=False)
        self.qx = nn.Linear(hidden, q_size, bias=False)
        self.k = nn.Linear(hidden, kv_size, bias=False)
        self.v = nn.Linear(hidden, kv_size, bias=False)


class ParallelAttention(nn.Module):
    """``self_attention``: block-causal self-attention and caption cross-attention from one pre-norm."""

    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.groups = config.num_query_groups
        self.head_dim = config.kv_channels
        q_size = self.head_dim * self.heads
        self.linear_qkv = LayerNormLinear(config)
        self.linear_kv_xattn = nn.Linear(
            int(config.hidden_size * config.xattn_cond_hidden_ratio),
            2 * self.head_dim * self.groups,
            bias=False,
        )
        self.linear_proj = nn.Linear(2 * q_size, config.hidden_size, bias=False)
        self.q_layernorm = ZeroCenteredLayerNorm(self.head_dim, config)
        self.q_layernorm_xattn = ZeroCenteredLayerNorm(self.head_dim, config)
        self.k_layernorm = ZeroCenteredLayerNorm(self.head_dim, config)
        self.k_layernorm_xattn = ZeroCenteredLayerNorm(self.head_dim, config)

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.unflatten(-1, (heads, self.head_dim))

    def keys_values(self, normed: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> KV:
        """Self-attention keys (normed, rotated) and values ``[B, kv_heads, tokens, hd]``."""
        key = self.k_layernorm(self._heads(self.linear_qkv.k(normed), self.groups).float())
        key = apply_rope(key, *rope).to(normed.dtype)
        value = self._heads(self.linear_qkv.v(normed), self.groups)
        return key.transpose(1, 2), value.transpose(1, 2)

    def caption_keys_values(self, caption_tokens: torch.Tensor) -> KV:
        """``[B, rows, kv_heads, L, hd]`` keys / values of the caption tokens ``[B, rows, L, D]``."""
        mixed = self.linear_kv_xattn(caption_tokens.to(self.linear_kv_xattn.weight.dtype))
        mixed = mixed.unflatten(-1, (self.groups, 2 * self.head_dim))
        key, value = mixed.split(self.head_dim, dim=-1)
        key = self.k_layernorm_xattn(key)
        return key.permute(0, 1, 3, 2, 4), value.permute(0, 1, 3, 2, 4)

    def forward(
        self,
        normed: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        slot_kv: list[KV | None],
        cached: tuple[torch.Tensor | None, torch.Tensor | None, list[int]],
        caption: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        plan: ForwardPlan,
        computed: list[int],
    ) -> tuple[torch.Tensor, dict[int, KV]]:
        """Projected attention output for the computed tokens, and the fresh keys/values of each slot."""
        slot_tokens = normed.shape[1] // len(computed)
        query = self.q_layernorm(self._heads(self.linear_qkv.q(normed), self.heads).float())
        query = apply_rope(query, *rope).to(normed.dtype).transpose(1, 2)
        key, value = self.keys_values(normed, rope)
        fresh = {}
        for index, position in enumerate(computed):
            span = slice(index * slot_tokens, (index + 1) * slot_tokens)
            fresh[position] = (key[:, :, span], value[:, :, span])
        keys = [fresh[p][0] if p in fresh else slot_kv[p][0] for p in range(len(plan.slots))]
        values = [fresh[p][1] if p in fresh else slot_kv[p][1] for p in range(len(plan.slots))]
        self_out = block_attention(query, keys, values, cached, plan, computed)

        query_x = self.q_layernorm_xattn(self._heads(self.linear_qkv.qx(normed), self.heads)).transpose(1, 2)
        caption_keys, caption_values, caption_mask = caption
        rows = [plan.slots[p].caption for p in computed]
        cross_out = caption_attention(query_x, caption_keys, caption_values, caption_mask, rows, slot_tokens)

        mixed = torch.cat([self_out, cross_out], dim=-1)
        mixed = mixed.unflatten(-1, (2, PROJ_GROUPS, -1)).transpose(-3, -2).flatten(-3)
        return F.linear(mixed.float(), self.linear_proj.weight.float()), fresh


class MLP(nn.Module):
    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        self.gated = config.gated_linear_unit
        ffn = config.ffn_hidden_size
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.linear_fc1 = nn.Linear(config.hidden_size, 2 * ffn if self.gated else ffn, bias=False)
        self.linear_fc2 = nn.Linear(ffn, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_fc1(self.layer_norm(x))
        if self.gated:
            gate, up = x.chunk(2, dim=-1)
            x = F.silu(gate) * up
        else:
            x = F.gelu(x)
        return self.linear_fc2(x)


class TransformerLayer(nn.Module):
    def __init__(self, config: MagiDiTConfig) -> None:
        super().__init__()
        self.ada_modulate_layer = AdaModulateLayer(config)
        self.self_attention = ParallelAttention(config)
        self.self_attn_post_norm = ZeroCenteredLayerNorm(config.hidden_size, config)
        self.mlp = MLP(config)
        self.mlp_post_norm = ZeroCenteredLayerNorm(config.hidden_size, config)

    def forward(
        self,
        hidden: torch.Tensor,
        condition: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        slot_kv: list[KV | None],
        cached: tuple[torch.Tensor | None, torch.Tensor | None, list[int]],
        caption: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        plan: ForwardPlan,
        computed: list[int],
    ) -> tuple[torch.Tensor, dict[int, KV]]:
        """``hidden [B, tokens of computed slots, D]``, ``condition [B, computed slots, cond]``."""
        attention_gate, mlp_gate = self.ada_modulate_layer.gates(condition)
        normed = self.self_attention.linear_qkv.layer_norm(hidden)
        attended, fresh = self.self_attention(normed, rope, slot_kv, cached, caption, plan, computed)
        hidden = _gated_residual(hidden, attended, attention_gate, self.self_attn_post_norm)
        hidden = _gated_residual(hidden, self.mlp(hidden), mlp_gate, self.mlp_post_norm)
        return hidden, fresh


def _gated_residual(
    residual: torch.Tensor, branch: torch.Tensor, gate: torch.Tensor, post_norm: ZeroCenteredLayerNorm
) -> torch.Tensor:
    """``residual + post_norm(branch * gate)`` in float, the gate broadcast over each slot's tokens."""
    slots = gate.shape[1]
    gated = branch.float().unflatten(1, (slots, -1)) * gate[:, :, None, :]
    return (residual.float() + post_norm(gated.flatten(1, 2))).to(residual.dtype)
