"""Attention microbench at Wan2.1's self-attention shapes: torch SDPA vs FlashAttention-4 vs our 8-bit kernel.

Shapes (batch 2 = both CFG branches): 1.3B (12 heads) and 14B (40 heads), head_dim 128, 480p 81 frames
(32760 tokens) and 720p 81 frames (75600 tokens). Rows per shape:

- ``sdpa``: plain ``F.scaled_dot_product_attention`` on contiguous (B, H, S, D) bf16 (the baseline).
- ``fa4``: ``flash_attn.cute.flash_attn_func`` on (B, S, H, D), when it imports.
- ``fp8``: :func:`core.kernels.fp8_attention.fp8_attention` on (B, S, H, D): eager quantization + kernel.
- ``fp8 compiled``: the same under ``torch.compile(fullgraph=True)`` (quantization fused by inductor),
  which is how Turbo runs it.
- ``fp8 kernel``: the Triton kernel alone on pre-quantized inputs.
- ``fa3`` / ``fa3 fp8``: FlashAttention-3's ``flash_attn_interface.flash_attn_func`` (bf16; e4m3 inputs with
  per-tensor descales of 1), when built from source (``hopper/`` of flash-attention, nvcc).
- ``sage``: SageAttention 2's ``sageattn`` (its CUDA kernels: int8 Q·K, fp8 P·V on SM89/SM90), when
  ``sageattention`` is installed (built from source with nvcc, see docs/speed.md).
- ``fa4 MxN``: FA4 with the forward tile forced to M x N (``--fa4-tiles``), to tune the SM90 pick.

Each: median ms over CUDA-event-timed runs after warm-up, TFLOP/s (4*B*H*S*S*D / t), speed vs SDPA in
the same run, and cosine / max abs diff against SDPA's output on random normal q, k, v (``normal``) and on
q, k with a per-channel offset like real activations (``offset``). Needs only torch + triton.

Example (one H100): python bench/attention_speed.py --json /tmp/attention.json
``--smoke`` runs a tiny shape on the CPU through the torch reference (no timing meaning; for tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.kernels.fp8_attention import (
    fp8_attention,
    fp8_attention_reference,
    fp8_attention_unavailable,
    quantize_for_fp8_attention,
)

SHAPES = {
    "1.3b-480p": (2, 32760, 12, 128),
    "14b-480p": (2, 32760, 40, 128),
    "1.3b-720p": (2, 75600, 12, 128),
    "14b-720p": (2, 75600, 40, 128),
}
SMOKE_SHAPE = (1, 300, 2, 128)
Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_inputs(shape: tuple[int, ...], data: str, device: torch.device, seed: int = 0):
    """bf16 (B, S, H, D) q, k, v; ``offset`` shifts q and k per channel like real activations."""
    generator = torch.Generator(device).manual_seed(seed)
    q, k, v = (torch.randn(shape, device=device, generator=generator) for _ in range(3))
    if data == "offset":
        shift = torch.randn(shape[-1], device=device, generator=generator)
        q, k = q + shift, k + 2 * shift
    return tuple(t.to(torch.bfloat16) for t in (q, k, v))


def sdpa_bshd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(
        1, 2
    )


def output_of(result: Any) -> torch.Tensor:
    """The attention output of a kernel that may also return its log-sum-exp as ``(out, lse)``."""
    return result[0] if isinstance(result, tuple) else result


def flash4_or_none() -> Attention | None:
    try:
        from flash_attn.cute import flash_attn_func
    except Exception:
        return None
    return lambda q, k, v: output_of(flash_attn_func(q, k, v))


def flash4_tiled(tile: str) -> Attention:
    """FA4's forward with its tile forced to ``tile`` ("MxN")."""
    from flash_attn.cute.interface import _flash_attn_fwd

    tile_mn = tuple(int(side) for side in tile.split("x"))
    return lambda q, k, v: _flash_attn_fwd(q, k, v, tile_mn=tile_mn)[0]


def flash3_or_none() -> dict[str, Attention]:
    try:
        from flash_attn_interface import flash_attn_func
    except Exception:
        return {}

    def fp8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q8, k8, v8 = (t.to(torch.float8_e4m3fn) for t in (q, k, v))
        return output_of(flash_attn_func(q8, k8, v8)).to(q.dtype)

    return {"fa3": lambda q, k, v: output_of(flash_attn_func(q, k, v)), "fa3 fp8": fp8}


def sage_or_none() -> Attention | None:
    try:
        from sageattention import sageattn
    except Exception:
        return None
    return lambda q, k, v: sageattn(q, k, v, tensor_layout="NHD", is_causal=False)


def implementations(device: torch.device, smoke: bool, fa4_tiles: list[str]) -> dict[str, Attention]:
    """Name -> attention on (B, S, H, D) tensors (SDPA is timed separately on (B, H, S, D))."""
    if smoke:
        return {"fp8 reference": fp8_attention_reference}
    found: dict[str, Attention] = {}
    flash4 = flash4_or_none()
    if flash4 is not None:
        found["fa4"] = flash4
        found.update({f"fa4 {tile}": flash4_tiled(tile) for tile in fa4_tiles})
    found.update(flash3_or_none())
    sage = sage_or_none()
    if sage is not None:
        found["sage"] = sage
    if fp8_attention_unavailable(device) is None:
        from core.kernels.triton_fp8_attention import fp8_attention_triton

        found["fp8"] = fp8_attention
        found["fp8 compiled"] = torch.compile(fp8_attention, fullgraph=True, dynamic=False)
        found["fp8 kernel"] = lambda q, k, v: fp8_attention_triton(
            quantize_for_fp8_attention(q, k, v), q.dtype
        )
    return found


def time_ms(fn: Callable[[], Any], reps: int, device: torch.device) -> float:
    """Median milliseconds of ``fn`` after two warm-up calls (CUDA events on GPU, wall clock on CPU)."""
    fn()
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def compare(out: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    out, truth = out.double().flatten(), truth.double().flatten()
    return {
        "cosine": F.cosine_similarity(out, truth, dim=0).item(),
        "max_abs_diff": (out - truth).abs().max().item(),
    }


def time_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, reps: int, device: torch.device) -> float:
    """Plain SDPA on contiguous (B, H, S, D) copies (the layout it is fastest on)."""
    qh, kh, vh = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    return time_ms(lambda: F.scaled_dot_product_attention(qh, kh, vh), reps, device)


def time_impl(impl: str, attention: Attention, q, k, v, reps: int, device: torch.device) -> dict[str, Any]:
    """Milliseconds of one implementation; ``fp8 kernel`` times the kernel on pre-quantized inputs."""
    if impl != "fp8 kernel":
        return {"ms": time_ms(lambda: attention(q, k, v), reps, device)}
    from core.kernels.triton_fp8_attention import _fp8_attention_fwd, fp8_attention_triton

    quantized = quantize_for_fp8_attention(q, k, v)
    ms = time_ms(lambda: fp8_attention_triton(quantized, q.dtype), reps, device)
    return {"ms": ms, "config": str(_fp8_attention_fwd.best_config)}


def bench_shape(
    name: str, shape: tuple[int, ...], device: torch.device, reps: int, smoke: bool, fa4_tiles: list[str]
) -> list:
    batch, seq, heads, dim = shape
    flops = 4.0 * batch * heads * seq * seq * dim
    rows: list[dict[str, Any]] = []
    q, k, v = make_inputs(shape, "normal", device)
    sdpa_ms = time_sdpa(q, k, v, reps, device)
    rows.append({"shape": name, "impl": "sdpa", "ms": sdpa_ms})
    truths = {data: sdpa_bshd(*make_inputs(shape, data, device)) for data in ("normal", "offset")}
    for impl, attention in implementations(device, smoke, fa4_tiles).items():
        row: dict[str, Any] = {"shape": name, "impl": impl}
        try:
            row.update(time_impl(impl, attention, q, k, v, reps, device))
            for data, truth in truths.items():
                row[data] = compare(attention(*make_inputs(shape, data, device)), truth)
        except Exception as error:  # one failing implementation must not hide the others' numbers
            row["error"] = f"{type(error).__name__}: {error}"
        rows.append(row)
    for row in rows:
        if "ms" in row:
            row["tflops"] = flops / (row["ms"] / 1000) / 1e12
            row["vs_sdpa"] = sdpa_ms / row["ms"]
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| shape | impl | ms | TFLOP/s | speed vs SDPA | cos (normal) | max abs (normal) | cos (offset) "
        "| max abs (offset) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['shape']} | {r['impl']} | {r['error']} |||||||")
            continue
        accuracy = " | ".join(
            f"{r[d]['cosine']:.5f} | {r[d]['max_abs_diff']:.4f}" if d in r else "- | -"
            for d in ("normal", "offset")
        )
        print(
            f"| {r['shape']} | {r['impl']} | {r['ms']:.2f} | {r['tflops']:.0f} | {r['vs_sdpa']:.2f}x | "
            f"{accuracy} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run through the torch reference")
    parser.add_argument("--fa4-tiles", default="", help="FA4 forward tiles to add, e.g. 128x176,128x192")
    args = parser.parse_args()

    if args.smoke:
        device, shapes, reps = torch.device("cpu"), {"smoke": SMOKE_SHAPE}, 1
    else:
        if not torch.cuda.is_available():
            sys.exit("needs a CUDA GPU (or --smoke)")
        device, reps = torch.device("cuda"), args.reps
        shapes = {name: SHAPES[name] for name in args.shapes.split(",")}
        print(f"GPU: {torch.cuda.get_device_name()} | torch {torch.__version__}")
        why_not = fp8_attention_unavailable(device)
        if why_not:
            print(f"fp8 kernel skipped: {why_not}")

    tiles = [tile for tile in args.fa4_tiles.split(",") if tile]
    rows: list[dict[str, Any]] = []
    for name, shape in shapes.items():
        rows += bench_shape(name, shape, device, reps, args.smoke, tiles)
        print_table([r for r in rows if r["shape"] == name])
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
