"""Where one steady FlashVSR streaming chunk spends its GPU time: ``torch.profiler`` over one chunk (after
the first two), kernels grouped as in bench/step_profile.py, the top kernels and the idle time.

Used by ``bench/upscale_speed.py --profile ROW[,ROW]``; one chunk is 8 output frames.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from bench.step_profile import group_of, kernel_times
from core.upscale.streamer import FlashVSRStreamer

SKIPPED_CHUNKS = 2
"""The first chunk has other shapes; the second may still warm up (CUDA graphs record on it)."""


def frames_of(pool: list[np.ndarray], count: int) -> Iterator[np.ndarray]:
    return (pool[i % len(pool)] for i in range(count))


def profile_chunk(streamer: FlashVSRStreamer, pool: list[np.ndarray], top: int = 15) -> dict[str, Any]:
    """Profile the chunk after :data:`SKIPPED_CHUNKS`; returns groups and top kernels in ms."""
    count = 8 * (SKIPPED_CHUNKS + 3) + 1
    chunks = streamer.run(frames_of(pool, count), count)
    for _ in range(SKIPPED_CHUNKS):
        next(chunks)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        next(chunks)
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1000
    chunks.close()
    kernels = kernel_times(prof)
    groups: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        groups[group_of(name)] += ms
    busy = sum(kernels.values())
    return {
        "wall_ms": round(wall_ms, 2),
        "kernels_ms": round(busy, 2),
        "idle_ms": round(max(wall_ms - busy, 0.0), 2),
        "groups_ms": {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda item: -item[1])},
        "top_kernels_ms": {k: round(v, 3) for k, v in sorted(kernels.items(), key=lambda kv: -kv[1])[:top]},
    }


def print_profile(name: str, result: dict[str, Any]) -> None:
    wall = result["wall_ms"]
    print(
        f"\nprofile {name}: one steady chunk {wall:.1f} ms wall, kernels {result['kernels_ms']:.1f} ms, "
        f"idle {result['idle_ms']:.1f} ms (kernels may overlap on side streams)"
    )
    for group, ms in result["groups_ms"].items():
        print(f"  {group:18s} {ms:8.2f} ms  {ms / wall:6.1%}")
    print("  top kernels:")
    for kernel, ms in result["top_kernels_ms"].items():
        print(f"  {ms:9.3f}  [{group_of(kernel)}] {kernel[:100]}")
