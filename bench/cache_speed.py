"""Step-cache speed on Wan2.1 transformer shapes with RANDOM weights (GPU; run by hand).

Builds ``WanTransformer3DModel`` from the real 1.3B or 14B config with random bf16 weights and runs only
the denoising loop the way ``WanPipeline`` does (UniPC, flow shift 3.0, two forwards per step for CFG, each
inside ``transformer.cache_context("cond"/"uncond")``) at 480p, 81 frames (latents 16x21x60x104).
Every cache run goes through ``core.caches.apply_cache`` and is compared, in the same process, with the
plain diffusers loop (no hooks at all) and with an uncached session (method none: only the counters).

Random weights say little about quality, and TeaCache's criterion (the relative change of the time
embedding) depends on the time-embedder weights: with random ones it moves far more per step than with
the real checkpoint, and the fitted rescale polynomial then explodes, so the preset thresholds reuse
nothing here. The "teacache@Nx" rows therefore use the plain (unrescaled) relative L1 with the threshold
that reuses the fraction of forwards an Nx run needs (found by replaying the criterion on this model's
time embeddings): they measure what the hooks deliver at that reuse rate, not which threshold gets it.

Example (one H100): python bench/cache_speed.py --model 1.3b --steps 50 --presets fast,faster
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.random_wan import random_transformer
from bench.wan_shapes import WAN_SIZES, wan_config
from core.caches import CacheConfig, CacheSession, parse_cache_config
from core.caches.config import Calibration, calibration_for
from core.caches.teacache import threshold_for_reuse
from weights.registry import get_card

CARDS = {"1.3b": "wan2.1-t2v-1.3b", "14b": "wan2.1-t2v-14b"}
METHODS = ("teacache", "first_block", "mag", "taylorseer")
TARGET_SPEEDUPS = {"fast": 2.0, "faster": 3.0}


def make_scheduler(steps: int, device: torch.device):
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    scheduler.set_timesteps(steps, device=device)
    return scheduler


@torch.no_grad()
def denoise(transformer, inputs: SimpleNamespace, steps: int, guidance: float = 5.0) -> torch.Tensor:
    """WanPipeline's loop without text encoder and VAE: CFG with cond/uncond cache contexts."""
    scheduler = make_scheduler(steps, inputs.noise.device)
    latents = inputs.noise.clone()
    for index, t in enumerate(scheduler.timesteps):
        context = {"step_index": index, "num_inference_steps": steps, "sigma": float(scheduler.sigmas[index])}
        model_input, timestep = latents.to(torch.bfloat16), t.expand(latents.shape[0])
        with transformer.cache_context("cond", **context):
            cond = transformer(model_input, timestep, inputs.cond, return_dict=False)[0]
        with transformer.cache_context("uncond", **context):
            uncond = transformer(model_input, timestep, inputs.uncond, return_dict=False)[0]
        latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents, return_dict=False)[0]
    return latents


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return result, time.perf_counter() - start


def psnr(latents: torch.Tensor, reference: torch.Tensor) -> float:
    mse = float((latents.float() - reference.float()).pow(2).mean())
    peak = float(reference.max() - reference.min())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def latent_ssim(latents: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM over the latent frames (channels as image planes, 7x7 uniform window, range of the
    reference): no VAE runs here, so this is a structural check on latents, not on decoded pixels."""
    a = latents.float()[0].permute(1, 0, 2, 3)  # frames, channels, h, w
    b = reference.float()[0].permute(1, 0, 2, 3)
    c1, c2 = (0.01 * float(b.max() - b.min())) ** 2, (0.03 * float(b.max() - b.min())) ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 7, stride=1)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim.mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(WAN_SIZES), default="1.3b")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--presets", default="fast,faster", help="comma list of fast, faster")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--frames", type=int, default=21, help="latent frames (21 = 81 video frames)")
    parser.add_argument("--no-planned", action="store_true", help="skip the teacache@Nx rows")
    parser.add_argument("--planned-only", action="store_true", help="only the teacache@Nx rows (no presets)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/cache_speed.py needs a CUDA GPU")
    device = torch.device("cuda")
    presets = [p for p in args.presets.split(",") if p]
    methods = [m for m in args.methods.split(",") if m]
    card = get_card(CARDS[args.model])

    transformer = random_transformer(wan_config(args.model), device, torch.bfloat16)
    pipe = SimpleNamespace(transformer=transformer)
    generator = torch.Generator(device).manual_seed(0)
    inputs = SimpleNamespace(
        noise=torch.randn(1, 16, args.frames, 60, 104, generator=generator, device=device),
        cond=torch.randn(1, 512, 4096, generator=generator, device=device, dtype=torch.bfloat16),
        uncond=torch.randn(1, 512, 4096, generator=generator, device=device, dtype=torch.bfloat16),
    )
    print(f"Wan2.1 {args.model} random weights, latents {tuple(inputs.noise.shape)}, {args.steps} steps, CFG")
    denoise(transformer, inputs, 2)  # warm-up: kernels, allocator

    reference, plain_seconds = timed(lambda: denoise(transformer, inputs, args.steps))
    rows = [("diffusers (no hooks)", None, plain_seconds, None, reference)]

    def run(label: str, config: CacheConfig, calibration: Calibration | None = None) -> None:
        with CacheSession(pipe, card, config, calibration) as session:
            latents, seconds = timed(lambda: denoise(transformer, inputs, args.steps))
            stats = session.stats()
        rows.append((label, config.threshold, seconds, stats, latents))
        print(f"  done {label}: {seconds:.1f} s", flush=True)

    run("uncached session", CacheConfig())
    for method in [] if args.planned_only else methods:
        for preset in presets:
            run(f"{method} {preset}", parse_cache_config({"method": method, "preset": preset}, card))
    if "teacache" in methods and not args.no_planned:
        plain = dataclasses.replace(calibration_for(card).teacache, coefficients=())
        for preset in presets:
            speedup = TARGET_SPEEDUPS[preset]
            timesteps = make_scheduler(args.steps, device).timesteps
            threshold = threshold_for_reuse(transformer, plain, timesteps, 1 - 1 / speedup)
            config = CacheConfig(method="teacache", threshold=threshold)
            run(f"teacache@{speedup:g}x", config, Calibration(teacache=plain))
    print_table(rows, plain_seconds, rows[1][2], reference)


def print_table(rows, plain_seconds: float, uncached_seconds: float, reference: torch.Tensor) -> None:
    header = (
        f"{'run':<22}{'threshold':>10}{'time s':>9}{'x diffusers':>13}{'x uncached':>12}"
        f"{'computed':>10}{'reused':>8}{'reuse %':>9}{'PSNR dB':>9}{'SSIM':>8}{'est. saved s':>14}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for label, threshold, seconds, stats, latents in rows:
        computed = stats["steps_computed"] if stats else "-"
        reused = stats["steps_reused"] if stats else "-"
        fraction = f"{100 * stats['reuse_fraction']:.0f}" if stats else "-"
        saved = f"{stats['estimated_seconds_saved']:.1f}" if stats else "-"
        quality = "finite" if latents is reference else f"{psnr(latents, reference):.1f}"
        similarity = "1" if latents is reference else f"{latent_ssim(latents, reference):.4f}"
        if not torch.isfinite(latents).all():
            quality = similarity = "non-finite"
        print(
            f"{label:<22}{'-' if threshold is None else f'{threshold:.4g}':>10}{seconds:>9.1f}"
            f"{plain_seconds / seconds:>13.2f}{uncached_seconds / seconds:>12.2f}"
            f"{computed:>10}{reused:>8}{fraction:>9}{quality:>9}{similarity:>8}{saved:>14}"
        )
    print(
        "\nGoal: >= 2x at fast, >= 3x at faster (x diffusers). PSNR and SSIM are of the final latents against"
        "\nthe plain diffusers run (no VAE here); with random weights they say little about real quality."
    )


if __name__ == "__main__":
    main()
