"""MAGI-1 FlowCache speed and memory with RANDOM weights at the published shapes (GPU; by hand).

Runs :func:`core.magi.generate` on the 4.5B-distill architecture (bf16 random weights, stand-in VAE) three
times on the same seed: no cache, FlowCache chunk reuse, and chunk reuse + KV-cache compression to a token
budget. Prints, per mode, ms per chunk (steady state: first to last finished chunk), total time, peak VRAM,
KV held at each chunk append (peak), chunk-steps reused and the ratio to no cache; then peak VRAM and KV after
chunk 5 and after the last chunk, which must match when memory is flat. Random weights say nothing about
quality, and their input changes differ from real weights', so ``--threshold`` here is set to show the
mechanism (the published real-weight setting is the "fast" preset, 0.01 / warm-up 5).

One H100, about 3 minutes with the defaults (10 chunks, 8 steps, window 4, 720x720; a 1-chunk warm-up run
first): python bench/magi_cache_speed.py
The issue's 20-chunk run (about 6 minutes): python bench/magi_cache_speed.py --chunks 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from magi_dit_speed import ZeroVAE, random_model

from core.magi import generate
from core.magi.caching import build_magi_cache, magi_cache_stats

GIB = 2**30


class KVMeter:
    """Wraps a KV policy (or none) and records the bytes the cache holds once a chunk is appended."""

    def __init__(self, inner=None) -> None:
        self.inner = inner
        self.query_tokens = getattr(inner, "query_tokens", 0)
        self.held: list[int] = []

    def compress(self, cache, layer: int) -> None:
        if self.inner is not None:
            self.inner.compress(cache, layer)
        if layer == cache.num_layers - 1:
            self.held.append(cache.bytes_held())


def run_mode(model, args, cache: dict | None, kv_budget: int, chunks: int | None = None) -> dict:
    hooks, policy = build_magi_cache(cache, kv_budget=kv_budget, granularity=args.granularity)
    meter = KVMeter(policy)
    caption = torch.randn(1, 120, model.config.caption_channels, device=model.device)
    mask = torch.ones(1, 120, dtype=torch.bool, device=model.device)
    finished: list[tuple[float, int]] = []

    def on_chunk(index: int, frames: torch.Tensor) -> None:
        torch.cuda.synchronize()
        finished.append((time.perf_counter(), torch.cuda.max_memory_allocated()))

    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    generate(
        model,
        ZeroVAE(),
        caption,
        mask,
        num_chunks=chunks or args.chunks,
        height=args.size,
        width=args.size,
        steps=args.steps,
        guidance=1.0,
        seed=0,
        window_size=args.window,
        on_chunk=on_chunk,
        step_hooks=hooks,
        kv_policy=meter,
    )
    torch.cuda.synchronize()
    total = time.perf_counter() - start
    times = [t for t, _ in finished]
    early = min(5, len(finished)) - 1
    return {
        "total_s": total,
        "ms_per_chunk": (times[-1] - times[0]) / max(1, len(times) - 1) * 1000,
        "peak_gib": torch.cuda.max_memory_allocated() / GIB,
        "peak_early_gib": finished[early][1] / GIB,
        "peak_last_gib": finished[-1][1] / GIB,
        "kv_early_gib": max(meter.held[: early + 1], default=0) / GIB,
        "kv_peak_gib": max(meter.held, default=0) / GIB,
        "stats": magi_cache_stats(hooks, policy),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="4.5B_distill")
    parser.add_argument("--size", type=int, default=720)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--kv-budget-chunks", type=float, default=2.0, help="KV budget in chunks' tokens")
    parser.add_argument("--granularity", default="frame", choices=("token", "frame", "chunk"))
    args = parser.parse_args()
    began = time.perf_counter()
    model = random_model(args.variant)
    chunk_tokens = 6 * (args.size // 16) ** 2
    budget = int(args.kv_budget_chunks * chunk_tokens)
    print(
        f"{args.variant} random weights, {args.size}x{args.size}, {args.chunks} chunks x {args.steps} steps, "
        f"window {args.window}; {chunk_tokens} tokens per chunk; KV budget {budget} tokens/layer "
        f"({args.granularity}); weights {torch.cuda.memory_allocated() / GIB:.1f} GiB; "
        f"{torch.cuda.get_device_name()}"
    )
    flowcache = {"method": "flowcache", "threshold": args.threshold, "warmup": args.warmup}
    run_mode(model, args, flowcache, chunk_tokens, chunks=1)  # kernels warm-up, not reported
    modes = {"no cache": (None, 0), "flowcache": (flowcache, 0), "flowcache + kv budget": (flowcache, budget)}
    results = {name: run_mode(model, args, cache, kv) for name, (cache, kv) in modes.items()}
    base = results["no cache"]
    print(f"{'mode':<22} {'ms/chunk':>9} {'x':>6} {'total s':>8} {'peak GiB':>9} {'KV GiB':>7} reused")
    for name, r in results.items():
        stats = r["stats"]
        reused = stats.get("chunk_steps_reused", 0)
        steps = reused + stats.get("chunk_steps_computed", 0)
        reused = f"{reused}/{steps}" if steps else "-"
        print(
            f"{name:<22} {r['ms_per_chunk']:>9.0f} {base['ms_per_chunk'] / r['ms_per_chunk']:>6.2f} "
            f"{r['total_s']:>8.1f} {r['peak_gib']:>9.1f} {r['kv_peak_gib']:>7.2f} {reused}"
        )
    print("memory flat? peak VRAM / KV held after chunk 5 vs after the last chunk:")
    for name, r in results.items():
        print(
            f"  {name:<22} VRAM {r['peak_early_gib']:.1f} -> {r['peak_last_gib']:.1f} GiB, "
            f"KV {r['kv_early_gib']:.2f} -> {r['kv_peak_gib']:.2f} GiB"
        )
    compressed = results["flowcache + kv budget"]["stats"]
    print("kv compression:", {k: v for k, v in compressed.items() if k.startswith("kv")})
    print(f"bench took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
