"""Which tokens a MAGI-1 forward processes and attends to, and the attention itself.

One DiT call processes a few *slots*, each one chunk of ``chunk_width`` latent frames (the chunks of the
denoising window, plus at times a just-finished chunk forwarded clean to fill the KV cache). Self-attention
is block causal: the keys are a row of *key blocks*, first the cached clean chunks (``plan.cached``), then
the slots in order, and every slot attends one contiguous range of them that ends at or before itself
(its KV range: itself and a few earlier chunks; never a later one). Within a chunk attention is full.

Attention runs one ``scaled_dot_product_attention`` call per slot over its key range (no mask tensor, so
flash / memory-efficient kernels apply), with grouped-query heads. Cross-attention: every slot attends the
valid tokens of its caption row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ChunkSlot:
    """One chunk of the tokens a forward processes."""

    chunk: int
    frame_start: int
    keys: tuple[int, int]
    caption: int = 0


@dataclass(frozen=True)
class ForwardPlan:
    """Slots of one call, the cached chunks placed before them, and the slots whose keys/values to return."""

    slots: tuple[ChunkSlot, ...]
    cached: tuple[int, ...] = ()
    store: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for position, slot in enumerate(self.slots):
            low, high = slot.keys
            own = len(self.cached) + position
            if not 0 <= low <= own < high <= own + 1:
                raise ValueError(
                    f"slot {position} (chunk {slot.chunk}) key range {slot.keys} must end at itself ({own})"
                )
        if any(not 0 <= s < len(self.slots) for s in self.store):
            raise ValueError(f"store {self.store} names a slot outside 0..{len(self.slots) - 1}")

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(slot.chunk for slot in self.slots)


def key_block_mask(plan: ForwardPlan) -> torch.Tensor:
    """``[slots, cached + slots]`` bool: which key blocks each slot attends."""
    blocks = len(plan.cached) + len(plan.slots)
    mask = torch.zeros(len(plan.slots), blocks, dtype=torch.bool)
    for position, slot in enumerate(plan.slots):
        mask[position, slot.keys[0] : slot.keys[1]] = True
    return mask


def token_mask(plan: ForwardPlan, slot_tokens: int, cached_tokens: Sequence[int] = ()) -> torch.Tensor:
    """``[query tokens, key tokens]`` bool: the block-causal mask expanded to tokens (for tests, flex)."""
    lengths = list(cached_tokens) or [slot_tokens] * len(plan.cached)
    lengths = lengths + [slot_tokens] * len(plan.slots)
    blocks = key_block_mask(plan)
    per_key = torch.repeat_interleave(blocks, torch.tensor(lengths), dim=1)
    return torch.repeat_interleave(per_key, slot_tokens, dim=0)


def block_attention(
    query: torch.Tensor,
    slot_keys: Sequence[torch.Tensor],
    slot_values: Sequence[torch.Tensor],
    cached: tuple[torch.Tensor | None, torch.Tensor | None, list[int]],
    plan: ForwardPlan,
    computed: Sequence[int],
) -> torch.Tensor:
    """Self-attention of the ``computed`` slots.

    ``query`` is ``[B, heads, tokens of computed slots, head_dim]`` in slot order; ``slot_keys`` /
    ``slot_values`` hold ``[B, kv_heads, tokens, head_dim]`` for every slot; ``cached`` is the gathered cache
    (keys, values, tokens per chunk). Returns ``[B, tokens, heads * head_dim]``.
    """
    cached_keys, cached_values, cached_lengths = cached
    keys = ([cached_keys] if cached_keys is not None else []) + list(slot_keys)
    values = ([cached_values] if cached_values is not None else []) + list(slot_values)
    keys_all = torch.cat(keys, dim=2)
    values_all = torch.cat(values, dim=2)
    lengths = list(cached_lengths) + [k.shape[2] for k in slot_keys]
    bounds = [0]
    for length in lengths:
        bounds.append(bounds[-1] + length)
    grouped = query.shape[1] != keys_all.shape[1]
    outputs, start = [], 0
    for position in computed:
        slot_query_tokens = slot_keys[position].shape[2]
        low, high = plan.slots[position].keys
        q = query[:, :, start : start + slot_query_tokens]
        start += slot_query_tokens
        k = keys_all[:, :, bounds[low] : bounds[high]]
        v = values_all[:, :, bounds[low] : bounds[high]]
        outputs.append(F.scaled_dot_product_attention(q, k, v, enable_gqa=grouped))
    out = torch.cat(outputs, dim=2)
    return out.transpose(1, 2).flatten(2)


def caption_attention(
    query: torch.Tensor,
    caption_keys: torch.Tensor,
    caption_values: torch.Tensor,
    caption_mask: torch.Tensor,
    rows: Sequence[int],
    slot_tokens: int,
) -> torch.Tensor:
    """Cross-attention of ``query [B, heads, slots * slot_tokens, hd]`` to caption rows.

    ``caption_keys`` / ``caption_values``: ``[B, rows, kv_heads, L, hd]``; ``caption_mask`` ``[B, rows, L]``;
    ``rows[i]`` is the caption row of the i-th computed slot. Returns ``[B, tokens, heads * hd]``.
    """
    grouped = query.shape[1] != caption_keys.shape[2]
    batch_out = []
    for b in range(query.shape[0]):
        parts = []
        for index, row in enumerate(rows):
            valid = caption_mask[b, row].bool()
            q = query[b : b + 1, :, index * slot_tokens : (index + 1) * slot_tokens]
            if not bool(valid.any()):
                parts.append(torch.zeros_like(q))
                continue
            k = caption_keys[b : b + 1, row][:, :, valid]
            v = caption_values[b : b + 1, row][:, :, valid]
            parts.append(F.scaled_dot_product_attention(q, k, v, enable_gqa=grouped))
        batch_out.append(torch.cat(parts, dim=2))
    return torch.cat(batch_out, dim=0).transpose(1, 2).flatten(2)
