"""Memory levels on one GPU: one Wan2.1 DiT forward per level, measured beside the estimator's numbers.

Random weights of the real shapes (Hub transformer/config.json: 1.3B 30 layers x 12 heads, dim 1536,
ffn 8960; 14B 40 layers x 40 heads, dim 5120, ffn 13824; head dim 128, text_dim 4096, 16 channels),
batch 1 as WanPipeline calls it, 81 frames at 480p (latent 21x60x104) and 720p (21x90x160).

Level 0 builds the DiT straight on the GPU. Levels 4-6 load it as the app does from level 4: the
low-RAM loader (``core/memory/low_ram_load.py``) streams a sharded bf16 safetensors checkpoint (written
once to ``--weights-dir``; 14B: 28.6 GB, about a minute) into pinned host memory, fp8 at levels 5-6,
and places it as the app does. Per level: load time, peak RSS rise while loading
(sampled) against the estimate, then per resolution the step time, peak VRAM
(``torch.cuda.max_memory_allocated``) against the estimate, and one forward under each per-process
VRAM cap (``set_per_process_memory_fraction``): OK or OOM, time and peak. Last, the planner's pick
for each cap. ``--models 14b --resolutions 480p,720p --levels 0,4,5,6`` takes about 6 minutes on one
H100 (checkpoint write included); ``--models 1.3b`` about 2.

``--fp8-map`` adds, per level 5+, the DiT mapped from its fp8 cache file (``core/memory/fp8_cache.py``)
instead of pinned RAM: cache write and reuse times, private RSS (RssAnon) after a forward, the peak
pinned memory group offload takes for it (against ``pinned_staging_gib``), and the step time with the
file in the page cache (warm) and after dropping its pages (cold: every step reads it from disk),
each against the pinned load at that level. 14B: about 14 GB more on disk, +2 minutes.

    python bench/memory.py [--models 1.3b,14b] [--resolutions 480p,720p] [--levels 0,4,5,6] [--caps 10,6]
    python bench/memory.py --models 14b --resolutions 480p --levels 5 --caps "" --fp8-map
    python bench/memory.py --smoke      # tiny shapes on the CPU: checks the script, measures nothing
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.memory.levels import configure_allocator  # before CUDA starts

configure_allocator()

import psutil  # noqa: E402
import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from bench.host_memory import RssPeak, drop_file_pages, host_pinned_peak_gib, rss_anon  # noqa: E402
from bench.wan_shapes import WAN_COMMON, WAN_SIZES  # noqa: E402
from core.hardware import GpuInfo, Hardware  # noqa: E402
from core.memory.apply import place_transformer  # noqa: E402
from core.memory.estimate import (  # noqa: E402
    estimate_memory,
    load_calibration,
    low_ram_load_gib,
    pinned_staging_gib,
    shape_for,
)
from core.memory.levels import CHUNKING, FP8_STORAGE, GROUP_OFFLOAD  # noqa: E402
from core.memory.low_ram_load import load_model_low_ram  # noqa: E402
from core.memory.planner import plan_memory  # noqa: E402
from weights.registry import get_card  # noqa: E402

GIB = 2**30
SHARD_BYTES = 5 * 10**9
MODELS = {
    "1.3b": {"card": "wan2.1-t2v-1.3b", **WAN_SIZES["1.3b"]},
    "14b": {"card": "wan2.1-t2v-14b", **WAN_SIZES["14b"]},
}
SMOKE_MODEL = {"card": "wan2.1-t2v-1.3b", "num_attention_heads": 2, "ffn_dim": 256, "num_layers": 2}
RESOLUTIONS = {"480p": (832, 480), "720p": (1280, 720)}
FRAMES = 81


def dit_config(shape: dict) -> dict:
    return {**WAN_COMMON, **{k: v for k, v in shape.items() if k != "card"}}


def random_(param: torch.Tensor, name: str, generator: torch.Generator) -> None:
    if param.ndim > 1 or name.endswith("scale_shift_table"):
        param.normal_(0.0, 0.02, generator=generator)
    else:
        param.fill_(1.0 if "norm" in name else 0.0)


def build_dit(shape: dict, device: torch.device) -> WanTransformer3DModel:
    """Random weights of ``shape`` made on ``device`` in the dtypes ``from_pretrained(torch_dtype=bf16)``
    gives (bf16, with the model's ``_keep_in_fp32_modules`` in float32); built on meta: no host copy."""
    with torch.device("meta"):
        model = WanTransformer3DModel(**dit_config(shape))
    keep = set(model._keep_in_fp32_modules or ())
    for name, param in model.named_parameters():
        param.data = param.data.to(torch.float32 if keep & set(name.split(".")) else torch.bfloat16)
    model = model.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            random_(param, name, generator)
    model.rope = WanRotaryPosEmbed(128, (1, 2, 2), 1024).to(device)
    return model.eval()


def ensure_checkpoint(shape: dict, folder: Path, device: torch.device) -> Path:
    """A sharded bf16 safetensors checkpoint of ``shape`` in ``folder`` (made on ``device``, 5 GB shards)."""
    config = dit_config(shape)
    if (folder / "done.json").exists() and json.loads((folder / "done.json").read_text()) == config:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        model = WanTransformer3DModel(**config)
    model.save_config(folder)
    generator = torch.Generator(device).manual_seed(0)
    shard, size, index = {}, 0, 0
    names = [name for name, _ in model.named_parameters()]
    for position, (name, param) in enumerate(model.named_parameters()):
        tensor = torch.empty(param.shape, dtype=torch.bfloat16, device=device)
        random_(tensor, name, generator)
        shard[name] = tensor.cpu()
        size += tensor.numel() * 2
        if size >= SHARD_BYTES or position == len(names) - 1:
            index += 1
            save_file(shard, folder / f"diffusion_pytorch_model-{index:05d}.safetensors")
            shard, size = {}, 0
    (folder / "done.json").write_text(json.dumps(config))
    return folder


def dit_inputs(width: int, height: int, frames: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator(device).manual_seed(1)
    latent = (1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)
    return {
        "hidden_states": torch.randn(latent, generator=generator, device=device, dtype=torch.bfloat16),
        "timestep": torch.tensor([500], device=device),
        "encoder_hidden_states": torch.randn(
            (1, 512, 4096), generator=generator, device=device, dtype=torch.bfloat16
        ),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_forward(model, inputs, device: torch.device, repeats: int, warmup: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` forwards after ``warmup`` ones, and the peak allocated GiB."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            sync(device)
            start = time.perf_counter()
            model(**inputs, return_dict=False)
            sync(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else 0.0
    return statistics.median(times), peak


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        host_empty_cache = getattr(torch._C, "_host_emptyCache", None)
        if host_empty_cache is not None:
            host_empty_cache()


def run_capped(model, inputs, device, cap_gib: float) -> tuple[str, float, float]:
    free(device)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * GIB / total), device)
    try:
        seconds, peak = timed_forward(model, inputs, device, repeats=1, warmup=0)
        return "ok", seconds, peak
    except torch.OutOfMemoryError:
        return "OOM", float("nan"), float("nan")
    finally:
        free(device)
        torch.cuda.set_per_process_memory_fraction(1.0, device)


def planner_pick(card, width: int, height: int, cap_gib: float) -> tuple[int, bool]:
    """The planner's level for a GPU with ``cap_gib`` free, and whether it expects the run to fit."""
    memory = psutil.virtual_memory()
    gpu = GpuInfo(0, "capped", cap_gib, cap_gib, (9, 0))
    hardware = Hardware((gpu,), memory.total / GIB, memory.available / GIB)
    plan = plan_memory(card, width, height, FRAMES, hardware)
    return plan.level, plan.fits


def load_level(shape: dict, level: int, folder: Path | None, device, fp8_cache: Path | None = None):
    """The DiT placed at ``level`` as the app places it (chunking hooks inside the offload hooks); mapped
    from an fp8 cache file in ``fp8_cache`` when given (level 5+)."""
    if level < GROUP_OFFLOAD:
        return build_dit(shape, device)
    pin = device.type == "cuda" and fp8_cache is None
    model, _ = load_model_low_ram(WanTransformer3DModel, folder, torch.bfloat16, level, pin, fp8_cache)
    place_transformer(model, level, device)
    return model


def bench_mapped(name, shape, sizes, level, device, repeats, folder, cache_dir, pinned_times):
    """Level ``level`` with the DiT mapped from its fp8 cache: one row per resolution."""
    rows = []
    started = time.perf_counter()
    del_model = load_level(shape, level, folder, device, cache_dir)
    write_s = time.perf_counter() - started
    del del_model
    free(device)
    anon = rss_anon()
    started = time.perf_counter()
    model = load_level(shape, level, folder, device, cache_dir)
    reuse_s = time.perf_counter() - started
    cache_file = model._weights_mapped_from
    est_pinned = pinned_staging_gib(shape_for(get_card(shape["card"]), load_calibration()))
    for res, (width, height) in sizes.items():
        inputs = dit_inputs(width, height, FRAMES if device.type == "cuda" else 9, device)
        reset_peak = getattr(torch.cuda, "reset_peak_host_memory_stats", None)
        if reset_peak is not None and device.type == "cuda":
            reset_peak()
        warm, _ = timed_forward(model, inputs, device, repeats, warmup=1)
        anon_gib, pinned = (rss_anon() - anon) / GIB, host_pinned_peak_gib()
        drop_file_pages(model, cache_file)
        cold, _ = timed_forward(model, inputs, device, repeats=1, warmup=0)
        base = pinned_times[res]
        row = (name, res, level, write_s, reuse_s, anon_gib, pinned, est_pinned, warm, warm / base, cold)
        rows.append((*row, cold / base))
        del inputs
    del model
    free(device)
    return rows


def print_mapped(rows) -> None:
    print(
        "\nfp8 DiT mapped from its cache file vs pinned in RAM (x pinned: step time over the pinned load"
        " at the same level); GiB; anon: RssAnon rise after load + forwards; pinned: peak pinned host memory"
    )
    print(
        f"{'model':6}{'res':6}{'lvl':>4}{'write s':>9}{'reuse s':>9}{'anon':>7}{'pinned':>8}{'est':>6}"
        f"{'warm s':>8}{'x pin':>7}{'cold s':>8}{'x pin':>7}"
    )
    for name, res, level, write_s, reuse_s, anon, pinned, est, warm, warm_x, cold, cold_x in rows:
        print(
            f"{name:6}{res:6}{level:>4}{write_s:>9.1f}{reuse_s:>9.1f}{anon:>7.2f}{pinned:>8.2f}{est:>6.2f}"
            f"{warm:>8.3f}{warm_x:>7.2f}{cold:>8.3f}{cold_x:>7.2f}"
        )


def bench_model(
    name: str, shape: dict, sizes: dict, levels, device, repeats: int, caps, weights_dir, fp8_map=False
):
    card = get_card(shape["card"])
    est_shape = shape_for(card, load_calibration())
    rows, cap_rows, level0, mapped_rows = [], [], {}, []
    folder = None
    if any(level >= GROUP_OFFLOAD for level in levels):
        started = time.perf_counter()
        folder = ensure_checkpoint(shape, weights_dir / name, device)
        print(f"{name}: checkpoint ready in {time.perf_counter() - started:.0f} s ({folder})", flush=True)
    for level in levels:
        with RssPeak() as rss:
            started = time.perf_counter()
            model = load_level(shape, level, folder, device)
            load_s = time.perf_counter() - started
        pinned = device.type == "cuda"
        est_rise = low_ram_load_gib(est_shape, level, 2, pinned=pinned) if level >= GROUP_OFFLOAD else 0.0
        this_level = {}
        for res, (width, height) in sizes.items():
            frames = FRAMES if device.type == "cuda" else 9
            inputs = dit_inputs(width, height, frames, device)
            seconds, peak = timed_forward(model, inputs, device, repeats, warmup=1)
            level0.setdefault(res, seconds)
            this_level[res] = seconds
            est = estimate_memory(card, width, height, FRAMES, level, map_fp8=False)
            ratio = seconds / level0[res]
            measured = (seconds, ratio, peak, est.dit_peak_gib, rss.rise_gib, est_rise, load_s)
            rows.append((name, res, level, *measured))
            for cap in caps:
                status, cap_s, cap_peak = run_capped(model, inputs, device, cap)
                cap_rows.append((name, res, cap, level, status, cap_s, cap_s / level0[res], cap_peak))
            del inputs
        print(f"{name}: level {level} done", flush=True)
        del model
        free(device)
        if fp8_map and level >= FP8_STORAGE:
            cache = weights_dir / f"{name}-fp8-cache"
            mapped_rows += bench_mapped(name, shape, sizes, level, device, repeats, folder, cache, this_level)
            print(f"{name}: level {level} mapped done", flush=True)
    picks = [(name, res, cap, *planner_pick(card, *size, cap)) for res, size in sizes.items() for cap in caps]
    return rows, cap_rows, picks, mapped_rows


def print_tables(rows, cap_rows, picks, mapped_rows, device_name: str) -> None:
    print(
        f"\nOne DiT forward, batch 1, {FRAMES} frames (--smoke: 9), bf16, {device_name}; GiB;"
        " est: core.memory.estimate; RSS: peak rise while loading (levels 4+: low-RAM loader, pinned)"
    )
    print(
        f"{'model':6}{'res':6}{'lvl':>4}{'time s':>9}{'x L0':>7}{'peak':>8}{'est':>7}{'err':>7}"
        f"{'RSS':>8}{'est RSS':>9}{'load s':>8}"
    )
    for name, res, level, sec, ratio, peak, est, rss, est_rss, load_s in rows:
        err = f"{(est - peak) / peak:+.0%}" if peak else "-"
        print(
            f"{name:6}{res:6}{level:>4}{sec:>9.3f}{ratio:>7.2f}{peak:>8.2f}{est:>7.2f}{err:>7}"
            f"{rss:>8.2f}{est_rss:>9.2f}{load_s:>8.1f}"
        )
    if cap_rows:
        print("\nOne forward per level under a per-process VRAM cap (set_per_process_memory_fraction)")
        print(f"{'model':6}{'res':6}{'cap':>5}{'lvl':>5}{'run':>5}{'time s':>9}{'x L0':>7}{'peak':>8}")
        for name, res, cap, level, status, sec, ratio, peak in cap_rows:
            print(f"{name:6}{res:6}{cap:>5}{level:>5}{status:>5}{sec:>9.3f}{ratio:>7.2f}{peak:>8.2f}")
    if picks:
        print("\nThe planner's pick for each cap (fits: what it expects)")
        for name, res, cap, level, fits in picks:
            print(f"{name:6}{res:6}{cap:>5} GiB -> level {level} fits={fits}")
    if mapped_rows:
        print_mapped(mapped_rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="1.3b,14b", help="comma list of: " + ", ".join(MODELS))
    parser.add_argument("--resolutions", default="480p,720p", help="comma list of: " + ", ".join(RESOLUTIONS))
    parser.add_argument("--levels", default="0,4,5,6", help="DiT placements, from 0, 4, 5, 6 (in this order)")
    parser.add_argument("--caps", default="10,6", help="per-process VRAM caps in GiB, comma list")
    parser.add_argument("--repeats", type=int, default=1, help="timed forwards after one warm-up")
    parser.add_argument("--weights-dir", type=Path, default=Path(tempfile.gettempdir()) / "wan_bench_weights")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (checks the script)")
    parser.add_argument(
        "--fp8-map", action="store_true", help="levels 5+ also with the DiT mapped from its fp8 cache file"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    if any(level not in (0, GROUP_OFFLOAD, FP8_STORAGE, CHUNKING) for level in levels):
        sys.exit("--levels takes 0, 4, 5 and 6 (levels 1-3 place the DiT as level 0)")
    if args.smoke:
        device, models, sizes, caps = torch.device("cpu"), {"tiny": SMOKE_MODEL}, {"tiny": (64, 48)}, ()
    elif not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU (or --smoke)")
    else:
        device = torch.device("cuda", 0)
        caps = tuple(float(cap) for cap in args.caps.split(",") if cap)
        models = {name: MODELS[name] for name in args.models.split(",")}
        sizes = {name: RESOLUTIONS[name] for name in args.resolutions.split(",")}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    for name, shape in models.items():
        tables = bench_model(
            name, shape, sizes, levels, device, args.repeats, caps, args.weights_dir, args.fp8_map
        )
        print_tables(*tables, device_name)


if __name__ == "__main__":
    main()
