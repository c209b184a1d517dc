"""Where one Wan2.1 DiT forward spends its GPU time: kernels grouped into attention, GEMMs, fused
elementwise (norms, modulation, RoPE, GELU), copies and the rest, for one speed option.

The same model and inputs as ``bench/t2v_speed.py`` (random weights of the real shapes, 480p 81 frames,
CFG as batch 2). After the first (compiling) call and warm-up, one forward runs under
``torch.profiler``; each kernel's device time is summed by group. The forward's wall time (CUDA events)
minus the kernels' sum is time the GPU sat idle (launch gaps, host work). This answers issue 15's
"profile the compiled step": which part of the 0.72x is left outside attention and GEMMs.

    python3 bench/step_profile.py --models 1.3b --option default --json $OUT/profile.json
    python3 bench/step_profile.py --models tiny --option plain      # CPU smoke test: CPU op times
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.t2v_speed import (
    CUDA,
    DEVICE,
    ROWS,
    SHAPES,
    build_dit,
    forward,
    make_inputs,
    timed_forward,
)
from core.speed import apply_speed

GROUPS = (
    ("attention", re.compile(r"flash|fmha|attention|attn|sdpa|fp8_attention|_fwd_kernel", re.I)),
    ("gemm", re.compile(r"gemm|matmul|mm_|xmma|nvjet|cutlass|scaled_mm|f8f8|cublas|addmm|\bmm\b", re.I)),
    ("fused elementwise", re.compile(r"^triton_|elementwise|vectorized|reduce|norm|gelu|mul|add", re.I)),
    ("copy", re.compile(r"memcpy|memset|copy|cat|index", re.I)),
)
"""Kernel name patterns, first match wins; anything else is ``other``."""
VIDEO = {"tiny": (9, 64, 64)}
"""(frames, height, width) per model; the real ones use 81 frames at 480x832."""


def group_of(name: str) -> str:
    return next((group for group, pattern in GROUPS if pattern.search(name)), "other")


def kernel_times(prof: Any) -> dict[str, float]:
    """Device time (ms) per GPU kernel name; on the CPU smoke test, self CPU time per op.

    Only the kernel events count: an op that launches its kernels through cuDNN or cuBLAS also carries
    their device time as its own (``aten::_cudnn_attention_forward``, ``aten::addmm``), which would count
    them twice."""
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if CUDA and event.device_type != DeviceType.CUDA:
            continue
        micros = event.self_device_time_total if CUDA else event.self_cpu_time_total
        if micros > 0:
            times[event.key] += micros / 1000
    return dict(times)


def profile_forward(size: str, option: str, batch: int, warmup: int) -> dict[str, Any]:
    model = build_dit(size)
    record: dict[str, Any] = {}
    if ROWS[option] is not None:
        record = apply_speed(SimpleNamespace(transformer=model), ROWS[option], DEVICE)
    inputs = make_inputs(batch, *VIDEO.get(size, (81, 480, 832)))
    for _ in range(1 + warmup):  # the first call compiles
        forward(model, inputs)
    _, wall_s = timed_forward(model, inputs)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
    with profile(activities=activities) as prof:
        forward(model, inputs)
        if CUDA:
            torch.cuda.synchronize()
    kernels = kernel_times(prof)
    groups: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        groups[group_of(name)] += ms
    busy_ms = sum(kernels.values())
    return {
        "model": size,
        "option": option,
        "speed": record,
        "wall_ms": wall_s * 1000,
        "busy_ms": busy_ms,
        "groups_ms": dict(sorted(groups.items(), key=lambda item: -item[1])),
        "top_kernels_ms": dict(sorted(kernels.items(), key=lambda item: -item[1])[:15]),
    }


def print_profile(result: dict[str, Any]) -> None:
    wall, busy = result["wall_ms"], result["busy_ms"]
    print(f"\n{result['model']} {result['option']}: forward {wall:.1f} ms, kernels {busy:.1f} ms")
    print("| group | ms | share of forward |\n|---|---|---|")
    for group, ms in result["groups_ms"].items():
        print(f"| {group} | {ms:.1f} | {ms / wall:.1%} |")
    if CUDA:
        print(f"| idle (gaps, host) | {max(wall - busy, 0.0):.1f} | {max(wall - busy, 0.0) / wall:.1%} |")
    print("\nTop kernels (ms):")
    for name, ms in result["top_kernels_ms"].items():
        print(f"  {ms:9.2f}  [{group_of(name)}] {name[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="1.3b", help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--option", default="default", help="one of: " + ", ".join(ROWS))
    parser.add_argument("--batch", type=int, default=2, help="2 = both CFG branches in one forward")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.option not in ROWS:
        sys.exit(f"--option must be one of {', '.join(ROWS)}")
    results = []
    for size in args.models.split(","):
        results.append(profile_forward(size, args.option, args.batch, args.warmup))
        print_profile(results[-1])
        torch._dynamo.reset()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
