"""Level 6: run the Wan DiT's feed-forward and self-attention over slices of the tokens.

Both are exact rewrites of the same maths: the feed-forward acts on each token alone, and in
self-attention each query row's softmax only needs all keys and values, so slicing the queries gives
the same output while the largest temporaries (the ``ffn_dim``-wide hidden layer, the queries, the
attention output and its projection) shrink to one slice. diffusers has no token chunking for Wan, so
the feed-forward gets a diffusers :class:`ModelHook` and self-attention a ``WanAttnProcessor`` subclass.
"""

from __future__ import annotations

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanTransformer3DModel

DEFAULT_CHUNK_TOKENS = 8192
HOOK_NAME = "token_chunked_ffn"


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


def _rotate(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved pairs (the same arithmetic as diffusers' processor)."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


class QueryChunkedWanAttnProcessor(WanAttnProcessor):
    """Wan self-attention computed for slices of the queries against all keys and values.

    Cross-attention, masks, fused projections and context parallel go to the parent unchanged.
    """

    def __init__(self, chunk_tokens: int) -> None:
        super().__init__()
        self.chunk_tokens = chunk_tokens

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        tokens = hidden_states.shape[1]
        if (
            encoder_hidden_states is not None
            or attention_mask is not None
            or attn.fused_projections
            or rotary_emb is None
            or self._parallel_config is not None
            or tokens <= self.chunk_tokens
        ):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        cos, sin = rotary_emb
        key = _rotate(attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1)), cos, sin)
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        outputs = []
        for start in range(0, tokens, self.chunk_tokens):
            rows = slice(start, start + self.chunk_tokens)
            query = attn.norm_q(attn.to_q(hidden_states[:, rows])).unflatten(2, (attn.heads, -1))
            query = _rotate(query, cos[:, rows], sin[:, rows])
            out = dispatch_attention_fn(
                query,
                key,
                value,
                attn_mask=None,
                dropout_p=0.0,
                is_causal=False,
                backend=self._attention_backend,
            )
            out = out.flatten(2, 3).type_as(query)
            outputs.append(attn.to_out[1](attn.to_out[0](out)))
        return torch.cat(outputs, dim=1)


def apply_token_chunking(transformer: WanTransformer3DModel, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> int:
    """Chunk every block's feed-forward and self-attention over tokens; returns how many blocks changed."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    for block in transformer.blocks:
        HookRegistry.check_if_exists_or_initialize(block.ffn).register_hook(
            TokenChunkedForward(chunk_tokens), HOOK_NAME
        )
        block.attn1.set_processor(QueryChunkedWanAttnProcessor(chunk_tokens))
    return len(transformer.blocks)
