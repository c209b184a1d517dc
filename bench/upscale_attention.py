"""Block-sparse attention at the real shapes of a 768x1408 FlashVSR chunk: our Triton kernel, the torch
fallback and dense SDPA (what ``attention="dense"`` runs), with the LCSA mask of the v1.1 settings."""

from __future__ import annotations

import statistics

import torch

import core.kernels.block_sparse_attention as bsa
from core.upscale.config import SparsityConfig
from core.upscale.sparse_mask import draft_block_mask, local_window_mask

HEIGHT, WIDTH = 768, 1408


def cuda_time(fn, repeats: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def attention_bench() -> dict[str, float]:
    torch.manual_seed(0)
    heads, dim, rows, cols = 12, 128, HEIGHT // 128, WIDTH // 128
    windows = rows * cols
    device, dtype = torch.device("cuda"), torch.bfloat16
    q = torch.randn(1, heads, windows * 128, dim, device=device, dtype=dtype)
    k = torch.randn(1, heads, 4 * windows * 128, dim, device=device, dtype=dtype)
    v = torch.randn_like(k)
    sparsity = SparsityConfig()
    local = local_window_mask(rows, cols, sparsity.local_range, device)
    q_windows = q.transpose(1, 2).reshape(windows, 128, heads * dim)
    k_windows = k.transpose(1, 2).reshape(4 * windows, 128, heads * dim)
    mask = draft_block_mask(q_windows, k_windows, heads, 1, sparsity.topk(windows, HEIGHT, WIDTH), local)
    from core.kernels.triton_block_sparse import block_sparse_attention_triton

    triton_ms = cuda_time(lambda: block_sparse_attention_triton(q, k, v, mask))
    torch_ms = cuda_time(lambda: bsa.block_sparse_attention_torch(q, k, v, mask))
    dense_ms = cuda_time(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    diff = (
        (
            block_sparse_attention_triton(q, k, v, mask).float()
            - bsa.block_sparse_attention_torch(q, k, v, mask).float()
        )
        .abs()
        .max()
        .item()
    )
    return {
        "mask_density": round(mask.float().mean().item(), 4),
        "triton_ms": round(triton_ms, 3),
        "torch_fallback_ms": round(torch_ms, 3),
        "dense_sdpa_ms": round(dense_ms, 3),
        "fallback_over_triton": round(torch_ms / triton_ms, 2),
        "dense_over_triton": round(dense_ms / triton_ms, 2),
        "max_abs_diff_triton_vs_fallback": diff,
    }


