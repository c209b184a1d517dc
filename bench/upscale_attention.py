"""Block-sparse attention at the real shapes of a 768x1408 FlashVSR chunk: our Triton kernel, FlexAttention
with the same mask, the torch fallback and dense SDPA (what ``attention="dense"`` runs), with the LCSA mask
of the v1.1 settings; each sparse kernel's largest difference from the fallback."""

from __future__ import annotations

import statistics

import torch

import core.kernels.block_sparse_attention as bsa
from core.kernels.flex_block_sparse import block_sparse_attention_flex
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


def attention_bench() -> dict[str, float | str]:
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

    fallback = bsa.block_sparse_attention_torch(q, k, v, mask).float()
    kernels = {
        "triton": lambda: block_sparse_attention_triton(q, k, v, mask),
        "flex": lambda: block_sparse_attention_flex(q, k, v, mask),  # mask conversion included
        "torch_fallback": lambda: bsa.block_sparse_attention_torch(q, k, v, mask),
        "dense_sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
    }
    result: dict[str, float | str] = {"mask_density": round(mask.float().mean().item(), 4)}
    for name, run in kernels.items():
        try:
            result[f"{name}_ms"] = round(cuda_time(run), 3)
            if name in ("triton", "flex"):
                result[f"max_abs_diff_{name}_vs_fallback"] = (run().float() - fallback).abs().max().item()
        except Exception as exc:  # one kernel failing must not cost the others' timings
            result[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return result
