"""Block-sparse attention: every query block attends only to the key blocks its mask allows.

``block_mask[b, h, i, j]`` says whether query block ``i`` sees key block ``j`` (blocks of ``block_size``
tokens). A query block that sees no key block outputs zeros, as the FlashVSR Block-Sparse-Attention
library does. On CUDA with Triton installed the Triton kernel runs; elsewhere a chunked SDPA fallback
with the dense token mask of a few query blocks at a time (memory stays bounded at any length).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLOCK_SIZE = 128


def triton_available(device: torch.device) -> bool:
    """True when the Triton kernel can run on ``device``."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: torch.Tensor, block_size: int
) -> None:
    if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected q, k, v shaped (B, H, L, D); got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[2] % block_size or k.shape[2] % block_size:
        raise ValueError(f"sequence lengths {q.shape[2]}, {k.shape[2]} must be multiples of {block_size}")
    expected = (*q.shape[:2], q.shape[2] // block_size, k.shape[2] // block_size)
    if tuple(block_mask.shape) != expected:
        raise ValueError(f"block mask shaped {tuple(block_mask.shape)}, expected {expected}")


def block_sparse_attention_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    block_size: int = BLOCK_SIZE,
    query_blocks_per_step: int = 8,
) -> torch.Tensor:
    """Reference-exact fallback: SDPA over ``query_blocks_per_step`` query blocks at a time."""
    _check(q, k, v, block_mask, block_size)
    block_mask = block_mask.to(torch.bool)
    out = torch.empty_like(q)
    n_query_blocks = block_mask.shape[2]
    for start in range(0, n_query_blocks, query_blocks_per_step):
        stop = min(start + query_blocks_per_step, n_query_blocks)
        blocks = block_mask[:, :, start:stop]
        empty = ~blocks.any(dim=-1)
        safe = blocks | empty.unsqueeze(-1)
        token_mask = safe.repeat_interleave(block_size, dim=2).repeat_interleave(block_size, dim=3)
        rows = slice(start * block_size, stop * block_size)
        part = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=token_mask)
        out[:, :, rows] = part.masked_fill(empty.repeat_interleave(block_size, dim=2).unsqueeze(-1), 0.0)
    return out


def block_sparse_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: torch.Tensor, block_size: int = BLOCK_SIZE
) -> torch.Tensor:
    """Attention of q (B, H, Lq, D) over k, v (B, H, Lk, D) restricted by ``block_mask``.

    The Triton kernel runs on CUDA for fp16/bf16 and a power-of-two head size (``tl.arange`` needs one;
    the real model's is 128); anything else takes the torch fallback, which gives the same result.
    """
    head_dim = q.shape[-1]
    power_of_two = head_dim >= 16 and head_dim & (head_dim - 1) == 0
    if triton_available(q.device) and q.dtype in (torch.float16, torch.bfloat16) and power_of_two:
        from .triton_block_sparse import block_sparse_attention_triton

        _check(q, k, v, block_mask, block_size)
        return block_sparse_attention_triton(q, k, v, block_mask, block_size)
    return block_sparse_attention_torch(q, k, v, block_mask, block_size)


def dense_masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: torch.Tensor, block_size: int = BLOCK_SIZE
) -> torch.Tensor:
    """Plain softmax attention with the full token mask; rows with no key give zeros. For tests only."""
    token_mask = block_mask.to(torch.bool).repeat_interleave(block_size, 2).repeat_interleave(block_size, 3)
    scores = (q.float() @ k.float().transpose(-1, -2)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~token_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return (weights @ v.float()).to(q.dtype)
