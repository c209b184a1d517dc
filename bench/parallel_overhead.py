"""Overhead of the split path: Wan2.1 1.3B (random weights) at 480p, plain Runner vs SplitGroup.

Both paths run memory level 0, SDPA attention, no compile and no step cache. The weights are random and
built straight on the GPU by both paths (seeded, so identical; nothing is written to or read from disk).
With ``--world-size 1`` (the default, one GPU) the split path runs the same pipeline in a rank process behind
the queue, the hooks and the per-step cancel all-reduce; it must give the same frames and add at most 2 %.
With more GPUs, ``--world-size 2 --modes cfg`` (etc.) shows the speed-up instead.

    python bench/parallel_overhead.py [--steps 4] [--frames 81] [--repeats 5] [--world-size 1 --modes cfg,cp]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_wan import random_runner, saved_frames, use_random_weights
from core.jobs import Job
from core.parallel.config import parse_parallel_flag
from core.parallel.split import SplitGroup
from core.settings import Settings
from core.tasks.t2v import T2VRequest

MODEL = "wan2.1-t2v-1.3b"


def timed(run) -> tuple[float, dict]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    record = run()
    return time.perf_counter() - started, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--modes", default="cfg,cp")
    args = parser.parse_args()
    modes = parse_parallel_flag(args.modes)
    root = Path(tempfile.mkdtemp(prefix="parallel-bench-"))
    settings = Settings(outputs_dir=root / "outputs", models_dir=root / "models", offline=True)
    request = T2VRequest(
        model=MODEL,
        prompt="a cat walking on a beach",
        frames=args.frames,
        width=args.width,
        height=args.height,
        steps=args.steps,
        seed=0,
        memory_level="0",
        speed={"attention": "sdpa", "compile": False},
    )
    folder = root / "models" / MODEL
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    runner = random_runner(settings, device, folder)
    plain_times, split_times = [], []
    setup = partial(use_random_weights, folder)
    with SplitGroup(settings, args.world_size, modes, rank_setup=setup) as group:
        print("warm-up (builds both pipelines)", flush=True)
        plain_record = runner.execute(Job(request))
        split_record = group.run(Job(request), request, modes)
        for _ in range(args.repeats):
            seconds, plain_record = timed(lambda: runner.execute(Job(request)))
            plain_times.append(seconds)
            seconds, split_record = timed(lambda: group.run(Job(request), request, modes))
            split_times.append(seconds)
    plain, split = saved_frames(plain_record), saved_frames(split_record)
    difference = float(np.nanmax(np.abs(plain - split))) if np.isfinite(plain).any() else float("nan")
    same = np.allclose(plain, split, atol=1e-3, equal_nan=True)
    base = statistics.median(plain_times)
    print(
        f"\n{MODEL} random weights, {args.frames} frames {args.width}x{args.height}, {args.steps} steps, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}"
    )
    print(f"split: {split_record['parallel']}")
    print(f"{'path':<24}{'median s':>10}{'min s':>10}{'ratio':>8}{'max |frame diff|':>18}")
    print(f"{'plain Runner':<24}{base:>10.3f}{min(plain_times):>10.3f}{1.0:>8.3f}{0.0:>18.2e}")
    median = statistics.median(split_times)
    print(
        f"{'split world ' + str(args.world_size):<24}{median:>10.3f}{min(split_times):>10.3f}"
        f"{median / base:>8.3f}{difference:>18.2e}"
    )
    if args.world_size == 1:
        verdict = "PASS" if median / base <= 1.02 and same else "FAIL"
        print(f"\nworld size 1: same frames (<= 1e-3) and <= 2 % overhead: {verdict}")


if __name__ == "__main__":
    main()
