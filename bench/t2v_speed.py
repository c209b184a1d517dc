"""One Wan2.1 DiT forward: plain diffusers against each of our speed options, in one process.

Random weights of the real shapes (built on meta, materialised on the GPU in bf16, normal init), 480p 81
frames (latent 16x21x60x104 = 32,760 tokens), the two CFG branches as ONE forward of batch 2 (``--batch 1``
for one branch). Per option: median seconds per forward after warm-up (CUDA events), first-call time
(includes compiling), peak VRAM, and max abs difference / cosine similarity of the output against plain.

    python3 bench/t2v_speed.py                      # 1.3B, ~6-8 minutes on one H100
    python3 bench/t2v_speed.py --models 1.3b,14b --json $OUT/speed.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wan_shapes import WAN_COMMON, WAN_SIZES  # noqa: E402
from core.speed import SpeedConfig, apply_speed  # noqa: E402
from core.speed.compile import compile_blocks, use_compile_cache  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")

SHAPES = {
    **WAN_SIZES,
    "tiny": {"num_attention_heads": 2, "ffn_dim": 256, "num_layers": 2},  # smoke test of this script
}
ROWS: dict[str, SpeedConfig | None] = {
    "plain": None,
    "attention": SpeedConfig(compile=False),
    "compile": SpeedConfig(attention="sdpa", compile=True),
    "default": SpeedConfig(),
    "unfused": SpeedConfig(gelu_epilogue=False),
    "fp8": SpeedConfig(fp8_linears=True),
    "turbo": SpeedConfig(turbo=True),
    "autotune": SpeedConfig(compile=False),  # not run unless named in --rows: compiling takes minutes
}
DEFAULT_ROWS = "plain,attention,compile,default,fp8,turbo"
EXPLORE_COMPILE = {"autotune": {"mode": "max-autotune-no-cudagraphs"}}
"""Rows that compile the blocks themselves with other inductor settings, to try levers before shipping."""
ROW_NOTES = {
    "plain": "diffusers 0.42.1 as loaded (native SDPA)",
    "attention": "auto attention backend, no compile",
    "compile": "PyTorch SDPA + regional compile",
    "default": "lossless default: auto attention + regional compile + GELU epilogue (FFN width <= 2048)",
    "unfused": "lossless default without the GELU epilogue fusion (A/B)",
    "fp8": "auto attention + compile + fp8 rowwise linears",
    "turbo": "Turbo: fp8 linears + 8-bit attention where installed + compile",
    "autotune": "auto attention + regional compile with max-autotune GEMMs (exploration)",
}


def build_dit(size: str, seed: int = 0) -> torch.nn.Module:
    """A Wan2.1 DiT of ``size`` with seeded random weights straight on the GPU, bf16 except the fp32 parts."""
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    with torch.device("meta"):
        model = WanTransformer3DModel(**WAN_COMMON, **SHAPES[size])
    keep = model._keep_in_fp32_modules  # as from_pretrained(dtype=bf16) loads them
    for name, param in model.named_parameters():
        if not any(part in name for part in keep):
            param.data = param.data.to(torch.bfloat16)
    model.to_empty(device=DEVICE)
    generator = torch.Generator(DEVICE).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 and "norm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
        with DEVICE:  # non-persistent rope tables were left empty by to_empty
            model.rope = WanRotaryPosEmbed(WAN_COMMON["attention_head_dim"], WAN_COMMON["patch_size"], 1024)
    return model.eval().requires_grad_(False)


def make_inputs(batch: int, frames: int, height: int, width: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator(DEVICE).manual_seed(1)
    latent = (batch, 16, (frames - 1) // 4 + 1, height // 8, width // 8)
    kwargs = {"device": DEVICE, "dtype": torch.bfloat16, "generator": generator}
    return {
        "hidden_states": torch.randn(*latent, **kwargs),
        "timestep": torch.full((batch,), 500.0, device=DEVICE),
        "encoder_hidden_states": torch.randn(batch, 512, 4096, **kwargs),
    }


def forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def timed_forward(model, inputs) -> tuple[torch.Tensor, float]:
    """One forward and its seconds: CUDA events on the GPU, wall clock on the CPU smoke test."""
    if not CUDA:
        started = time.perf_counter()
        return forward(model, inputs), time.perf_counter() - started
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    out = forward(model, inputs)
    end.record()
    torch.cuda.synchronize()
    return out, begin.elapsed_time(end) / 1000


def time_forward(model, inputs, warmup: int, runs: int) -> tuple[torch.Tensor, float, list[float]]:
    """First call (wall seconds, includes compiling), then ``warmup`` untimed and ``runs`` timed calls."""
    synchronize()
    started = time.perf_counter()
    out = forward(model, inputs)
    synchronize()
    first = time.perf_counter() - started
    for _ in range(warmup):
        forward(model, inputs)
    times = []
    for _ in range(runs):
        out, seconds = timed_forward(model, inputs)
        times.append(seconds)
    return out, first, times


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if CUDA else float("nan")


def measure_row(size: str, row: str, inputs, plain_out, args) -> dict[str, Any]:
    model = build_dit(size)
    record: dict[str, Any] = {}
    if ROWS[row] is not None:
        pipe = SimpleNamespace(transformer=model)
        record = apply_speed(pipe, ROWS[row], DEVICE, models_dir=Path(args.cache_dir))
    if row in EXPLORE_COMPILE:
        use_compile_cache(Path(args.cache_dir))
        blocks = compile_blocks(model, **EXPLORE_COMPILE[row])
        record["compile"] = {"on": True, "reason": str(EXPLORE_COMPILE[row]), "blocks": blocks}
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    out, first, times = time_forward(model, inputs, args.warmup, args.runs)
    result = {
        "model": size,
        "option": row,
        "note": ROW_NOTES[row],
        "speed": record,
        "median_s": statistics.median(times),
        "times_s": times,
        "first_call_s": first,
        "peak_gib": peak_gib(),
    }
    reference = out if plain_out is None else plain_out
    diff = (out.float() - reference.float()).abs().max().item()
    cosine = F.cosine_similarity(out.float().flatten(), reference.float().flatten(), dim=0).item()
    result.update(max_abs_diff=diff, cosine=cosine)
    return result, out


def free() -> None:
    torch._dynamo.reset()
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def describe(record: dict[str, Any]) -> tuple[str, str, str]:
    if not record:
        return "native", "off", "off"
    fp8 = "on" if record["fp8_linears"]["on"] else "off"
    if record["fp8_attention"]["on"]:
        fp8 += " +8bit attn"
    return record["attention"]["on"], "on" if record["compile"]["on"] else "off", fp8


def same_as_earlier(row: str, done: list[str]) -> str | None:
    """Turbo without an 8-bit attention kernel is the fp8 row again: say so instead of re-running it."""
    if row != "turbo" or "fp8" not in done:
        return None
    from core.speed.attention import pick_turbo_attention

    backend, why_not = pick_turbo_attention(DEVICE)
    return f"same as fp8: {why_not}" if backend is None else None


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        "\n| model | option | attention | compile | fp8 | s/forward | vs plain | first call s | peak GiB "
        "| max abs diff | cosine |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    plain = {r["model"]: r["median_s"] for r in results if r["option"] == "plain" and "median_s" in r}
    for r in results:
        if "median_s" not in r:
            print(f"| {r['model']} | {r['option']} | {r.get('error') or r.get('skipped')} |||||||||")
            continue
        attention, compiled, fp8 = describe(r["speed"])
        ratio = r["median_s"] / plain[r["model"]] if r["model"] in plain else float("nan")
        print(
            f"| {r['model']} | {r['option']} | {attention} | {compiled} | {fp8} | {r['median_s']:.3f} | "
            f"{ratio:.2f}x | {r['first_call_s']:.1f} | {r['peak_gib']:.1f} | {r['max_abs_diff']:.4f} | "
            f"{r['cosine']:.5f} |"
        )


def package_versions() -> dict[str, str]:
    found = {"torch": torch.__version__}
    for name in ("diffusers", "flash-attn-4", "nvidia-cutlass-dsl", "torchao", "sageattention"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="1.3b", help="comma list of: " + ", ".join(SHAPES))
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="comma list of: " + ", ".join(ROWS))
    parser.add_argument("--batch", type=int, default=2, help="2 = both CFG branches in one forward")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache-dir", default="/tmp/video-studio-bench", help="compile cache root")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    rows = ["plain"] + [r for r in args.rows.split(",") if r != "plain"]

    gpu = torch.cuda.get_device_name() if CUDA else "none (CPU smoke test: use --models tiny)"
    print(f"GPU: {gpu} | {json.dumps(package_versions())}")
    print(f"shape: batch {args.batch} (CFG as one forward), {args.frames} frames {args.height}x{args.width}")
    results: list[dict[str, Any]] = []
    for size in args.models.split(","):
        inputs = make_inputs(args.batch, args.frames, args.height, args.width)
        plain_out = None
        done: list[str] = []
        for row in rows:
            duplicate = same_as_earlier(row, done)
            if duplicate:
                results.append({"model": size, "option": row, "skipped": duplicate})
                continue
            started = time.perf_counter()
            try:
                result, out = measure_row(size, row, inputs, plain_out, args)
            except Exception as error:
                traceback.print_exc()
                results.append(
                    {"model": size, "option": row, "error": f"{type(error).__name__}: {error}"[:300]}
                )
                free()
                continue
            plain_out = out if row == "plain" else plain_out
            del out
            done.append(row)
            results.append(result)
            took = time.perf_counter() - started
            print(f"{size} {row}: {result['median_s']:.3f} s/forward, took {took:.0f} s", flush=True)
            free()
        del inputs, plain_out
        free()
    print_table(results)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "versions": package_versions(),
                    "args": vars(args),
                    "configs": {k: v and asdict(v) for k, v in ROWS.items()},
                    "results": results,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
