"""Block-sparse attention through PyTorch's FlexAttention: the same block mask, as whole allowed blocks.

The mask's allowed key blocks of each query block become a ``BlockMask`` of *full* blocks (no per-token
mask function runs), so the kernel visits exactly the blocks our Triton kernel visits, with FlexAttention's
tuned tiles. A query block with no key block outputs zeros, as FlexAttention does for rows with no key.
On CUDA the compiled kernel runs (compiled once per shape). Elsewhere FlexAttention's eager reference runs,
which computes every block and applies only the mask function: there the block mask also goes in as one.
"""

from __future__ import annotations

import inspect

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .block_lists import active_key_blocks

_FROM_KV = inspect.signature(BlockMask.from_kv_blocks).parameters
_NO_Q_BLOCKS = {"compute_q_blocks": False} if "compute_q_blocks" in _FROM_KV else {}
"""Skips the transposed (query) lists where torch can: only the backward pass uses them."""
_compiled = None


def _kernel(device: torch.device):
    global _compiled
    if device.type != "cuda":
        return flex_attention
    if _compiled is None:
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def block_sparse_attention_flex(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: torch.Tensor, block_size: int = 128
) -> torch.Tensor:
    """q (B, H, Lq, D), k and v (B, H, Lk, D); ``block_mask`` (B, H, Lq/block, Lk/block)."""
    mask = flex_block_mask(block_mask, q.shape[2], k.shape[2], block_size)
    return _kernel(q.device)(q, k, v, block_mask=mask)


def flex_block_mask(block_mask: torch.Tensor, q_len: int, k_len: int, block_size: int = 128) -> BlockMask:
    """Our (B, H, query blocks, key blocks) mask as a FlexAttention ``BlockMask`` of full blocks."""
    order, counts = active_key_blocks(block_mask)
    allowed = block_mask.to(torch.bool)

    def in_allowed_block(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor):
        return allowed[b, h, q_idx // block_size, kv_idx // block_size]

    return BlockMask.from_kv_blocks(
        torch.zeros_like(counts),
        order,
        full_kv_num_blocks=counts,
        full_kv_indices=order,
        BLOCK_SIZE=block_size,
        mask_mod=None if block_mask.device.type == "cuda" else in_allowed_block,
        seq_lengths=(q_len, k_len),
        **_NO_Q_BLOCKS,
    )
