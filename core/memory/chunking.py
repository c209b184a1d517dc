"""Level 6: run each Wan DiT block over slices of the tokens, all but self-attention's keys and values.

Everything in a Wan block acts on each token alone (modulated norms, projections, cross-attention
queries, the feed-forward, the gated residuals) except self-attention, where every query needs all
keys and values. So the block runs in two passes: the first builds the keys and values for all tokens
slice by slice, the second takes one slice of tokens through query, attention, cross-attention and
feed-forward. The same maths as diffusers' block; what stays whole is the block's input and output and
the keys and values (4 token x dim tensors in bf16), not the fp32 modulation temporaries, the queries
or the ``ffn_dim``-wide hidden layer. diffusers has no token chunking for Wan, so this is a diffusers
:class:`ModelHook` on each block.
"""

from __future__ import annotations

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import (
    WanAttnProcessor,
    WanTransformer3DModel,
    WanTransformerBlock,
)

from core.memory.levels import DEFAULT_CHUNK_TOKENS

HOOK_NAME = "token_chunked_block"
FFN_HOOK_NAME = "token_chunked_ffn"


def _rotate(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved pairs (the same arithmetic as diffusers' processor)."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


class TokenChunkedForward(ModelHook):
    """Runs a token-wise module (B, N, C) -> (B, N, C') over slices of at most ``chunk_tokens`` tokens."""

    def __init__(self, chunk_tokens: int) -> None:
        super().__init__()
        self.chunk_tokens = chunk_tokens

    def new_forward(self, module: torch.nn.Module, hidden_states: torch.Tensor, *args, **kwargs):
        original = self.fn_ref.original_forward
        if hidden_states.shape[1] <= self.chunk_tokens:
            return original(hidden_states, *args, **kwargs)
        parts = [original(part, *args, **kwargs) for part in hidden_states.split(self.chunk_tokens, dim=1)]
        return torch.cat(parts, dim=1)


class TokenChunkedWanBlock(ModelHook):
    """Replaces a ``WanTransformerBlock`` forward by the two-pass sliced one when there are more than
    ``chunk_tokens`` tokens; anything it does not cover (fused projections, context parallel, a
    custom self-attention processor) runs the block's own forward."""

    def __init__(self, chunk_tokens: int) -> None:
        super().__init__()
        self.chunk_tokens = chunk_tokens

    def _covered(self, block: WanTransformerBlock, tokens: int, rotary_emb) -> bool:
        processor = block.attn1.processor
        return (
            tokens > self.chunk_tokens
            and rotary_emb is not None
            and type(processor) is WanAttnProcessor
            and processor._parallel_config is None
            and not block.attn1.fused_projections
        )

    def new_forward(self, block: WanTransformerBlock, hidden_states, encoder_hidden_states, temb, rotary_emb):
        if not self._covered(block, hidden_states.shape[1], rotary_emb):
            return self.fn_ref.original_forward(hidden_states, encoder_hidden_states, temb, rotary_emb)
        return self._sliced(block, hidden_states, encoder_hidden_states, temb, rotary_emb)

    def _sliced(self, block: WanTransformerBlock, hidden_states, encoder_hidden_states, temb, rotary_emb):
        step = self.chunk_tokens
        slices = [slice(start, start + step) for start in range(0, hidden_states.shape[1], step)]
        key, value = _keys_and_values(block, hidden_states, temb, rotary_emb, slices)
        out = torch.empty_like(hidden_states)
        for rows in slices:
            out[:, rows] = _slice_forward(
                block, hidden_states, encoder_hidden_states, temb, rotary_emb, rows, key, value
            )
        return out


def _modulation(block: WanTransformerBlock, temb: torch.Tensor, rows: slice) -> tuple[torch.Tensor, ...]:
    """The block's six fp32 shift/scale/gate terms (per token for Wan2.2 TI2V, else per video)."""
    if temb.ndim == 4:
        terms = (block.scale_shift_table.unsqueeze(0) + temb[:, rows].float()).chunk(6, dim=2)
        return tuple(t.squeeze(2) for t in terms)
    return (block.scale_shift_table + temb.float()).chunk(6, dim=1)


def _attention_input(block, hidden_states, temb, rows) -> torch.Tensor:
    shift, scale = _modulation(block, temb, rows)[:2]
    part = hidden_states[:, rows]
    return (block.norm1(part.float()) * (1 + scale) + shift).type_as(part)


def _keys_and_values(block, hidden_states, temb, rotary_emb, slices):
    """Self-attention keys (normed, rotated) and values for every token, built one slice at a time."""
    attn = block.attn1
    cos, sin = rotary_emb
    shape = (*hidden_states.shape[:2], attn.heads, -1)
    key = value = None
    for rows in slices:
        normed = _attention_input(block, hidden_states, temb, rows)
        part_key = attn.norm_k(attn.to_k(normed)).unflatten(2, (attn.heads, -1))
        part_key = _rotate(part_key, cos[:, rows], sin[:, rows])
        part_value = attn.to_v(normed).unflatten(2, (attn.heads, -1))
        if key is None:
            key = part_key.new_empty(shape[:3] + part_key.shape[3:])
            value = part_value.new_empty(shape[:3] + part_value.shape[3:])
        key[:, rows], value[:, rows] = part_key, part_value
    return key, value


def _slice_forward(block, hidden_states, encoder_hidden_states, temb, rotary_emb, rows, key, value):
    """One slice of tokens through the rest of the block, as ``WanTransformerBlock.forward`` does."""
    attn = block.attn1
    cos, sin = rotary_emb
    _, _, gate, c_shift, c_scale, c_gate = _modulation(block, temb, rows)
    part = hidden_states[:, rows]
    normed = _attention_input(block, hidden_states, temb, rows)
    query = attn.norm_q(attn.to_q(normed)).unflatten(2, (attn.heads, -1))
    query = _rotate(query, cos[:, rows], sin[:, rows])
    attended = dispatch_attention_fn(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
        backend=attn.processor._attention_backend,
    )  # fmt: skip
    attended = attn.to_out[1](attn.to_out[0](attended.flatten(2, 3).type_as(query)))
    part = (part.float() + attended * gate).type_as(part)
    normed = block.norm2(part.float()).type_as(part)
    part = part + block.attn2(normed, encoder_hidden_states, None, None)
    normed = (block.norm3(part.float()) * (1 + c_scale) + c_shift).type_as(part)
    return (part.float() + block.ffn(normed).float() * c_gate).type_as(part)


def apply_token_chunking(transformer: WanTransformer3DModel, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> int:
    """Run every Wan block over slices of ``chunk_tokens`` tokens; returns how many blocks changed.

    Blocks of other DiTs built on Wan (SkyReels-V2's, with their causal attention masks) get only their
    feed-forward sliced.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    for block in transformer.blocks:
        if type(block) is WanTransformerBlock:
            registry = HookRegistry.check_if_exists_or_initialize(block)
            registry.register_hook(TokenChunkedWanBlock(chunk_tokens), HOOK_NAME)
        else:
            registry = HookRegistry.check_if_exists_or_initialize(block.ffn)
            registry.register_hook(TokenChunkedForward(chunk_tokens), FFN_HOOK_NAME)
    return len(transformer.blocks)
