"""FlashVSR speed on one GPU: the block-sparse attention kernels, then the whole streaming upscaler.

1. Attention at the real shapes of a 768x1408 chunk (12 heads, head dim 128, 66 query windows against
   4 slabs of 66 key windows, the LCSA mask of the v1.1 settings): Triton kernel vs the torch fallback
   vs dense SDPA without a mask (what a plain implementation does), median of CUDA-event timings, and
   the largest difference between Triton and the fallback.
2. Tiny-Long with random weights of the real v1.1 config, x4 from 352x192 to 1408x768: output fps over
   the steady chunks (the first chunk, which warms up, is reported apart), peak VRAM, KV cache size;
   once with the Triton kernel, once with the fallback, and once with the KV cache offloaded to the CPU.

Run on one GPU:  python bench/upscale_speed.py [--frames 61] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.kernels.block_sparse_attention as bsa
from core.upscale.config import FlashVSRConfig, SparsityConfig
from core.upscale.dit import StreamingWanDiT
from core.upscale.loading import FlashVSRModel
from core.upscale.lq_projection import CausalLQProjection
from core.upscale.sparse_mask import draft_block_mask, local_window_mask
from core.upscale.streamer import FlashVSRStreamer
from core.upscale.tc_decoder import TinyConditionalDecoder

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


def random_model(device: torch.device, dtype: torch.dtype) -> FlashVSRModel:
    """Tiny-Long with random weights of the real v1.1 sizes (no files needed)."""
    config = FlashVSRConfig()
    with torch.device(device):
        dit = StreamingWanDiT(config.dit)
        lq = CausalLQProjection(config.lq_projection)
        decoder = TinyConditionalDecoder(config.tc_decoder)
    for module in (dit, lq, decoder):
        module.to(dtype).eval()
    context = torch.randn(1, 512, config.dit.text_dim, device=device) * 0.1
    model = FlashVSRModel("tiny-long", config, dit, lq, context, tc_decoder=decoder)
    dit.prepare(context)
    return model


def pipeline_bench(model: FlashVSRModel, frames: int, offload: bool) -> dict[str, float]:
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(8)]
    source = (pool[i % len(pool)] for i in range(frames))
    streamer = FlashVSRStreamer(model, offload_kv_cache=offload)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    chunk_times, chunk_frames = [], []
    last = time.perf_counter()
    for out in streamer.run(source, frames):
        torch.cuda.synchronize()
        now = time.perf_counter()
        chunk_times.append(now - last)
        chunk_frames.append(len(out))
        last = now
    steady = sum(chunk_frames[1:]) / sum(chunk_times[1:]) if len(chunk_times) > 1 else float("nan")
    return {
        "frames": sum(chunk_frames),
        "first_chunk_s": round(chunk_times[0], 3),
        "steady_fps": round(steady, 2),
        "overall_fps": round(sum(chunk_frames) / sum(chunk_times), 2),
        "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "kv_cache_gib": round(streamer.last_kv_cache_bytes / 2**30, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    results: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "size": f"{WIDTH}x{HEIGHT}",
        "triton": bsa.triton_available(torch.device("cuda")),
    }
    results["attention"] = attention_bench()
    print(json.dumps(results, indent=2), flush=True)
    model = random_model(torch.device("cuda"), torch.bfloat16)
    results["tiny_long_triton"] = pipeline_bench(model, args.frames, offload=False)
    print(json.dumps(results["tiny_long_triton"]), flush=True)
    results["tiny_long_triton_kv_offload"] = pipeline_bench(model, args.frames, offload=True)
    print(json.dumps(results["tiny_long_triton_kv_offload"]), flush=True)
    available = bsa.triton_available
    bsa.triton_available = lambda device: False
    try:
        results["tiny_long_torch_fallback"] = pipeline_bench(model, args.frames, offload=False)
    finally:
        bsa.triton_available = available
    print(json.dumps(results["tiny_long_torch_fallback"]), flush=True)
    fallback, triton = results["tiny_long_torch_fallback"], results["tiny_long_triton"]
    results["pipeline_triton_speedup"] = round(triton["steady_fps"] / fallback["steady_fps"], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
