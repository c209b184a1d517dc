"""FlashVSR speed on one GPU (issue 31): the attention kernels, then every speed option row by row.

1. Attention at the real shapes of a 768x1408 chunk (12 heads, head dim 128, 66 query windows against
   4 slabs of 66 key windows, the LCSA mask of the v1.1 settings): Triton kernel vs the torch fallback vs
   dense SDPA, median of CUDA-event timings, and the largest Triton-fallback difference.
2. Rows (bench/upscale_rows.py): random weights of the real v1.1 config, x4 from 352x192 (x2 from 704x384)
   to 1408x768. Each row builds a fresh model, applies its options, runs a short warm-up clip (its time,
   compile included, is ``warmup_s``), then the timed clip (default 10 s at 24 fps): overall fps (first
   chunk included), steady fps, first-chunk time, peak VRAM (weights included), KV-cache size, and the
   frames' difference from the row's reference (max abs, PSNR over every 4th frame).
3. ``--warm-start ROW``: the row again in a fresh process with the on-disk compile cache filled by step 2:
   the time from a built model to the first frames, as a user's later run sees it.
4. ``--profile ROW[,ROW]``: torch.profiler over one steady chunk (bench/upscale_profile.py).

Rows run until ``--budget-s`` is spent; the rest are reported skipped. JSON is rewritten after every row.

    python bench/upscale_speed.py --json $OUT/upscale.json --profile baseline,all
    python bench/upscale_speed.py --rows baseline,compile --seconds 4     # a quicker look
    python bench/upscale_speed.py --rows baseline,pipeline-2gpu,pipeline-2gpu-overlap   # on 2 GPUs
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.upscale_attention import attention_bench
from bench.upscale_profile import frames_of, print_profile, profile_chunk
from bench.upscale_rows import ROWS, Row, random_model, source_pool
from core.upscale.compile_regions import compile_flashvsr
from core.upscale.pipeline_split import pipeline_devices, split_dit
from core.upscale.streamer import FlashVSRStreamer

QUALITY_STRIDE = 4
"""Every 4th output frame is kept for the comparison with the reference row."""
CUDA = torch.cuda.is_available()


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def timed_run(streamer: FlashVSRStreamer, pool: list[np.ndarray], count: int) -> dict[str, Any]:
    """Upscale ``count`` frames; chunk times from the first frame asked to each chunk's frames on the host."""
    sync()
    chunk_times, chunk_frames, kept = [], [], []
    start = last = time.perf_counter()
    for out in streamer.run(frames_of(pool, count), count):
        now = time.perf_counter()
        chunk_times.append(now - last)
        chunk_frames.append(len(out))
        first = sum(chunk_frames) - len(out)
        kept += [out[i - first] for i in range(first, first + len(out)) if i % QUALITY_STRIDE == 0]
        last = now
    total = time.perf_counter() - start
    steady_frames, steady_time = sum(chunk_frames[1:]), sum(chunk_times[1:])
    return {
        "frames": sum(chunk_frames),
        "overall_fps": round(sum(chunk_frames) / total, 2),
        "steady_fps": round(steady_frames / steady_time, 2) if steady_time else None,
        "first_chunk_s": round(chunk_times[0], 3),
        "total_s": round(total, 2),
        "kept": np.stack(kept),
    }


def compare(frames: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    diff = frames.astype(np.float32) - reference.astype(np.float32)
    mse = float((diff**2).mean())
    return {
        "max_abs_diff": float(np.abs(diff).max()),
        "mean_abs_diff": round(float(np.abs(diff).mean()), 4),
        "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse else None,  # None: identical
    }


def measure(
    name: str, row: Row, args: argparse.Namespace, references: dict[str, np.ndarray]
) -> dict[str, Any]:
    if CUDA and torch.cuda.device_count() < row.gpus:
        return {"skipped": f"needs {row.gpus} GPUs, {torch.cuda.device_count()} visible"}
    start = time.perf_counter()
    if args.tiny:  # core.tiny imports every tiny builder (transformers...): not on the GPU machine
        from core.tiny.flashvsr import TINY_CONFIG

        model = random_model(row.variant, torch.device("cpu"), torch.float32, TINY_CONFIG)
    else:
        model = random_model(row.variant, torch.device("cuda"), torch.bfloat16)
    if row.gpus > 1:  # as the Upscale tab's "pipeline_gpus" runs it (the CPU smoke test: the CPU twice)
        split_dit(model, pipeline_devices(model.device, row.gpus))
    compiled = compile_flashvsr(model, row.speed, args.cache_dir)
    pool = source_pool(row.scale, tiny=args.tiny)
    streamer = FlashVSRStreamer(model, offload_kv_cache=row.offload, speed=row.speed)
    built_s = time.perf_counter() - start
    warmup_s = None
    if args.warmup_frames:
        start = time.perf_counter()
        for _ in streamer.run(frames_of(pool, args.warmup_frames), args.warmup_frames):
            pass
        warmup_s = round(time.perf_counter() - start, 2)
    sync()
    if CUDA:
        for index in range(row.gpus):
            torch.cuda.reset_peak_memory_stats(index)
    count = args.short_frames if row.short else args.frames
    result = timed_run(streamer, pool, count)
    kept = result.pop("kept")
    result |= {
        "variant": row.variant,
        "scale": row.scale,
        "speed": row.speed.record(),
        "kv_offload": row.offload,
        "compile": compiled,
        "build_s": round(built_s, 2),
        "warmup_s": warmup_s,
        "peak_vram_gib": round(max_peak_gib(row.gpus), 2) if CUDA else None,
        "gpus": row.gpus,
        "kv_cache_gib": round(streamer.last_kv_cache_bytes / 2**30, 3),
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
    }
    reference = references.get(row.reference)
    if name == row.reference:
        references[name] = kept
    elif reference is not None and reference.shape == kept.shape:  # the noise depends on the length
        result |= {"vs": row.reference} | compare(kept, reference)
    if name in args.profile and CUDA:
        result["profile"] = profile_chunk(streamer, pool)
        print_profile(name, result["profile"])
    return result


def max_peak_gib(gpus: int) -> float:
    """The highest peak of the ``gpus`` GPUs the row ran on."""
    return max(torch.cuda.max_memory_allocated(index) for index in range(gpus)) / 2**30


def warm_start(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``name`` in a fresh process with the compile cache on disk: build, first frames, no warm-up."""
    out = Path(args.cache_dir) / f"warm_start_{name}.json"
    command = [
        sys.executable,
        __file__,
        "--rows",
        name,
        "--frames",
        "41",
        "--warmup-frames",
        "0",
        "--no-attention",
        "--warm-start",
        "",
        "--cache-dir",
        str(args.cache_dir),
        "--json",
        str(out),
    ]
    command += ["--tiny"] if args.tiny else []
    start = time.perf_counter()
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    row = json.loads(out.read_text())["rows"][name]
    keys = ("build_s", "first_chunk_s", "overall_fps", "error")
    return {"process_s": round(time.perf_counter() - start, 1)} | {key: row.get(key) for key in keys}


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print("\n| row | overall fps | steady fps | first chunk s | warm-up s | peak GiB | KV GiB | vs ref |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if "overall_fps" not in r:
            print(f"| {name} | {r.get('error') or r.get('skipped')} |||||||")
            continue
        quality = "reference" if name == ROWS[name].reference else "not compared (other clip length)"
        if "vs" in r:
            psnr = f"{r['psnr_db']} dB" if r["psnr_db"] else "identical"
            quality = f"max {r['max_abs_diff']:.0f}, {psnr}"
        print(
            f"| {name} | {r['overall_fps']} | {r['steady_fps']} | {r['first_chunk_s']} | {r['warmup_s']} | "
            f"{r['peak_vram_gib']} | {r['kv_cache_gib']} | {quality} |"
        )


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma list of: " + ", ".join(ROWS))
    parser.add_argument("--seconds", type=float, default=10.0, help="timed clip length (with --clip-fps)")
    parser.add_argument("--clip-fps", type=float, default=24.0)
    parser.add_argument("--frames", type=int, help="timed clip frames (overrides --seconds)")
    parser.add_argument("--short-frames", type=int, default=81, help="clip of the slow rows (offload, full)")
    parser.add_argument("--warmup-frames", type=int, default=33, help="0: no warm-up run")
    parser.add_argument("--budget-s", type=float, default=330.0, help="start no row after this many seconds")
    parser.add_argument("--warm-start", default="all", help="rows to rerun in a fresh process ('' for none)")
    parser.add_argument("--profile", default="", help="rows to profile one steady chunk of")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/vsr-models"), help="compile cache here")
    parser.add_argument("--no-attention", action="store_true", help="skip the attention kernel timings")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with the tiny test config")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CUDA and not args.tiny:
        raise SystemExit("needs a CUDA GPU (or --tiny for the CPU smoke test)")
    names = [n for n in args.rows.split(",") if n]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    args.frames = args.frames or round(args.seconds * args.clip_fps)
    args.profile = set(filter(None, args.profile.split(",")))
    begin = time.perf_counter()
    gpu = torch.cuda.get_device_name() if CUDA else "cpu"
    output = "128x128" if args.tiny else "1408x768"
    results: dict[str, Any] = {
        "gpu": gpu,
        "torch": torch.__version__,
        "tiny": args.tiny,
        "output": output,
        "frames": args.frames,
        "rows": {},
    }
    if not args.no_attention and CUDA:
        results["attention"] = attention_bench()
        print(json.dumps(results["attention"]), flush=True)
    references: dict[str, np.ndarray] = {}
    for name in names:
        if time.perf_counter() - begin > args.budget_s:
            results["rows"][name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
            continue
        try:
            results["rows"][name] = measure(name, ROWS[name], args, references)
        except Exception as exc:  # one failing option must not cost the others' numbers
            traceback.print_exc()
            results["rows"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        shown = {k: v for k, v in results["rows"][name].items() if k != "profile"}
        print(name, json.dumps(shown, default=str), flush=True)
        torch._dynamo.reset()
        gc.collect()
        if CUDA:
            torch.cuda.empty_cache()
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    for name in filter(None, args.warm_start.split(",")):
        if time.perf_counter() - begin > args.budget_s + 60:
            break
        try:
            results.setdefault("warm_start", {})[name] = warm_start(name, args)
        except Exception as exc:
            results.setdefault("warm_start", {})[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print("warm start", name, results["warm_start"][name], flush=True)
    results["elapsed_s"] = round(time.perf_counter() - begin, 1)
    print_table(results["rows"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
