"""Memory levels on one GPU: one Wan2.1 DiT forward per level, measured beside the estimator's numbers.

Random weights of the real shapes (Hub transformer/config.json: 1.3B 30 layers x 12 heads, dim 1536,
ffn 8960; 14B 40 layers x 40 heads, dim 5120, ffn 13824; head dim 128, text_dim 4096, 16 channels),
batch 1 as WanPipeline calls it, 81 frames at 480p (latent 21x60x104) and 720p (21x90x160).

For each DiT placement (levels 0-3 place the DiT alike, then 4, 5, 6): step time, peak VRAM
(``torch.cuda.max_memory_allocated``), peak RSS of the process (sampled), and the estimate. Then, for
per-process VRAM caps of 24/16/12/8/6 GiB, the planner's pick runs under the cap: OK or OOM, and its
time relative to level 0. About 6 minutes on one H100; ``--models 1.3b`` takes about one.

    python bench/memory.py [--models 1.3b,14b] [--resolutions 480p,720p] [--repeats 2]
    python bench/memory.py --smoke      # tiny shapes on the CPU: checks the script, measures nothing
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.memory.levels import configure_allocator  # before CUDA starts

configure_allocator()

import psutil  # noqa: E402
import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed  # noqa: E402

from bench.wan_shapes import WAN_COMMON, WAN_SIZES  # noqa: E402
from core.hardware import GpuInfo, Hardware  # noqa: E402
from core.memory.apply import place_transformer  # noqa: E402
from core.memory.estimate import estimate_memory  # noqa: E402
from core.memory.levels import GROUP_OFFLOAD  # noqa: E402
from core.memory.planner import plan_memory  # noqa: E402
from weights.registry import get_card  # noqa: E402

GIB = 2**30
MODELS = {
    "1.3b": {"card": "wan2.1-t2v-1.3b", **WAN_SIZES["1.3b"]},
    "14b": {"card": "wan2.1-t2v-14b", **WAN_SIZES["14b"]},
}
SMOKE_MODEL = {"card": "wan2.1-t2v-1.3b", "num_attention_heads": 2, "ffn_dim": 256, "num_layers": 2}
RESOLUTIONS = {"480p": (832, 480), "720p": (1280, 720)}
FRAMES = 81
PLACEMENTS = (0, 6, 5, 4)  # DiT placements; host-heavy ones last (the pinned-memory cache only grows)
CAPS_GIB = (24, 16, 12, 8, 6)


class RssPeak:
    """Peak resident set size of this process while the block runs, sampled every 20 ms."""

    def __enter__(self) -> RssPeak:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak / GIB


def build_dit(shape: dict, device: torch.device) -> WanTransformer3DModel:
    """Random weights of ``shape`` made on ``device`` in the dtypes ``from_pretrained(torch_dtype=bf16)``
    gives (bf16, with the model's ``_keep_in_fp32_modules`` in float32); built on meta: no host copy."""
    config = {k: v for k, v in shape.items() if k != "card"}
    with torch.device("meta"):
        model = WanTransformer3DModel(**WAN_COMMON, **config)
    keep = set(model._keep_in_fp32_modules or ())
    for name, param in model.named_parameters():
        param.data = param.data.to(torch.float32 if keep & set(name.split(".")) else torch.bfloat16)
    model = model.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim > 1 or name.endswith("scale_shift_table"):
                param.normal_(0.0, 0.02, generator=generator)
            else:
                param.fill_(1.0 if "norm" in name else 0.0)
    model.rope = WanRotaryPosEmbed(128, (1, 2, 2), 1024).to(device)
    return model.eval()


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


def planner_pick(card, width: int, height: int, cap_gib: float) -> tuple[int, bool]:
    """The planner's level for a GPU with ``cap_gib`` free, and whether it expects the run to fit."""
    memory = psutil.virtual_memory()
    gpu = GpuInfo(0, "capped", cap_gib, cap_gib, (9, 0))
    hardware = Hardware((gpu,), memory.total / GIB, memory.available / GIB)
    plan = plan_memory(card, width, height, FRAMES, hardware)
    return plan.level, plan.fits


def placement_of(level: int) -> int:
    """Levels 1-3 change the VAE, text encoder and CFG only: the DiT is placed as at level 0."""
    return level if level >= GROUP_OFFLOAD else 0


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


def bench_model(name: str, shape: dict, sizes: dict, device, repeats: int, caps: tuple[int, ...]):
    card = get_card(shape["card"])
    rows, cap_rows, level0 = [], [], {}
    picks = {(res, cap): planner_pick(card, w, h, cap) for res, (w, h) in sizes.items() for cap in caps}
    for placement in PLACEMENTS:
        level_rows = []
        with RssPeak() as rss:
            started = time.perf_counter()
            model = build_dit(shape, device)
            if placement >= GROUP_OFFLOAD:
                model.to("cpu")
                free(device)
            place_transformer(model, placement, device)
            setup_s = time.perf_counter() - started
            for res, (width, height) in sizes.items():
                frames = FRAMES if device.type == "cuda" else 9
                inputs = dit_inputs(width, height, frames, device)
                seconds, peak = timed_forward(model, inputs, device, repeats, warmup=1)
                level0.setdefault(res, seconds)
                est = estimate_memory(card, width, height, FRAMES, placement)
                ratio = seconds / level0[res]
                level_rows.append(
                    (
                        name,
                        res,
                        placement,
                        seconds,
                        ratio,
                        peak,
                        est.dit_peak_gib,
                        est.dit_host_weights_gib,
                        setup_s,
                    )
                )
                for cap in caps:
                    level, fits = picks[(res, cap)]
                    if device.type == "cuda" and placement_of(level) == placement:
                        status, cap_s, cap_peak = run_capped(model, inputs, device, cap)
                        ratio = cap_s / level0[res]
                        cap_rows.append((name, res, cap, level, fits, status, cap_s, ratio, cap_peak))
                del inputs
        rows += [(*row, rss.gib) for row in level_rows]
        del model
        free(device)
    return rows, cap_rows


def print_tables(rows, cap_rows, device_name: str) -> None:
    print(
        f"\nOne DiT forward, batch 1, {FRAMES} frames (--smoke: 9), bf16, {device_name}; GiB;"
        " est: core.memory.estimate"
    )
    print(
        f"{'model':6}{'res':6}{'lvl':>4}{'time s':>9}{'x L0':>7}{'peak':>8}{'est':>7}"
        f"{'RSS':>8}{'est host':>9}{'setup s':>9}"
    )
    for name, res, level, sec, ratio, peak, est, est_host, setup, rss in rows:
        print(
            f"{name:6}{res:6}{level:>4}{sec:>9.3f}{ratio:>7.2f}{peak:>8.2f}{est:>7.2f}"
            f"{rss:>8.1f}{est_host:>9.1f}{setup:>9.1f}"
        )
    if not cap_rows:
        return
    print("\nPlanner's pick under a per-process VRAM cap (set_per_process_memory_fraction)")
    print(
        f"{'model':6}{'res':6}{'cap':>5}{'pick':>5}{'fits':>6}{'run':>5}{'time s':>9}{'x L0':>7}{'peak':>8}"
    )
    for name, res, cap, level, fits, status, sec, ratio, peak in cap_rows:
        print(f"{name:6}{res:6}{cap:>5}{level:>5}{fits!s:>6}{status:>5}{sec:>9.3f}{ratio:>7.2f}{peak:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="1.3b,14b", help="comma list of: " + ", ".join(MODELS))
    parser.add_argument("--resolutions", default="480p,720p", help="comma list of: " + ", ".join(RESOLUTIONS))
    parser.add_argument("--repeats", type=int, default=1, help="timed forwards after one warm-up")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        device, models, sizes, caps = torch.device("cpu"), {"tiny": SMOKE_MODEL}, {"tiny": (64, 48)}, ()
    elif not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU (or --smoke)")
    else:
        device, caps = torch.device("cuda", 0), CAPS_GIB
        models = {name: MODELS[name] for name in args.models.split(",")}
        sizes = {name: RESOLUTIONS[name] for name in args.resolutions.split(",")}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    for name, shape in models.items():
        print_tables(*bench_model(name, shape, sizes, device, args.repeats, caps), device_name)


if __name__ == "__main__":
    main()
