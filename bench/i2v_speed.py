"""Wan2.1 I2V 14B at 480p: seconds per denoising step and peak GPU memory, plain diffusers against ours.

One process, one GPU. The pipeline is ``WanImageToVideoPipeline`` with random weights of the real shapes
built straight on the device (DiT: Wan2.1-I2V-14B-480P's ``transformer/config.json``, 36 input channels and
the image tokens' added K/V; image encoder: CLIP ViT-H/14; the real Wan VAE; a tiny 4096-wide text encoder,
whose content does not matter for timing). Rows, each on a freshly built pipeline from the same seed:

- ``plain``: diffusers as loaded (native SDPA, no compile);
- ``ours``: the app's default speed options applied (``core.speed.apply_speed(SpeedConfig())``: the
  auto attention backend, regional compile, the GELU epilogue).

Each row runs one generation of ``--warmup`` + ``--steps`` steps (CFG 5: two DiT calls a step); the first
steps are untimed (they include compiling), the others are timed between step ends (CUDA-synchronised).
Peak memory: the most allocated while denoising (after the image and prompt encodings and the VAE encode of
the conditioning video), and over the whole call. The latents are not decoded unless ``--decode``.

    python3 bench/i2v_speed.py                          # about 3 minutes on one H100
    python3 bench/i2v_speed.py --json $OUT/i2v.json --decode
    python3 bench/i2v_speed.py --dit tiny               # CPU smoke test (tiny I2V model, 64x48, 9 frames)
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
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.random_wan import default_dtype, random_transformer  # noqa: E402
from bench.wan_shapes import wan_config  # noqa: E402
from core.speed import SpeedConfig, apply_speed  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
I2V_14B = {**wan_config("14b"), "in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 5120}
"""``Wan-AI/Wan2.1-I2V-14B-480P-Diffusers``'s transformer config."""
VIT_H14 = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}
"""The I2V repos' ``image_encoder/config.json`` (open-clip ViT-H/14)."""
ROWS = {"plain": None, "ours": SpeedConfig()}


def real_pipeline() -> Any:
    """The Wan2.1 I2V 14B pipeline with seeded random weights on the device, in the app's dtypes."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from core.hardware import compute_dtype
    from core.tiny.wan import load_tokenizer, umt5_text_encoder

    dtype = compute_dtype(DEVICE)
    transformer = random_transformer(I2V_14B, DEVICE, dtype)
    with torch.device(DEVICE), default_dtype(dtype):
        text_encoder = umt5_text_encoder(4096, d_kv=64, d_ff=256, num_layers=1)
        image_encoder = CLIPVisionModel(CLIPVisionConfig(**VIT_H14)).eval()
    with torch.device(DEVICE):
        vae = AutoencoderKLWan()
    flow = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}
    pipe = WanImageToVideoPipeline(
        tokenizer=load_tokenizer(Path(tempfile.mkdtemp(prefix="i2v-bench-")) / "tokenizer"),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(**flow, flow_shift=3.0),
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pipeline() -> Any:
    """The tiny I2V test model (``core.tiny``), built and loaded on the device, for the smoke run."""
    from diffusers import WanImageToVideoPipeline

    from core.tiny.wan_i2v import build_tiny_wan_i2v

    folder = build_tiny_wan_i2v(Path(tempfile.mkdtemp(prefix="i2v-bench-")) / "tiny-wan-i2v")
    pipe = WanImageToVideoPipeline.from_pretrained(folder).to(DEVICE)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def gib(value: int) -> float:
    return value / 2**30 if CUDA else float("nan")


def measure(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build the pipeline, apply the row's speed options, run one timed generation."""
    torch.manual_seed(0)
    pipe = tiny_pipeline() if args.dit == "tiny" else real_pipeline()
    applied = {}
    if ROWS[row] is not None:
        applied = apply_speed(pipe, ROWS[row], DEVICE, models_dir=Path(args.cache_dir))
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8))
    ends: list[float] = []
    denoise_peak = 0

    def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal denoise_peak
        synchronize()
        ends.append(time.perf_counter())
        if CUDA:
            denoise_peak = max(denoise_peak, torch.cuda.max_memory_allocated())
        return {}

    synchronize()
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe(
        image=picture,
        prompt="a cat walks across the room",
        negative_prompt="blurry",
        height=args.height,
        width=args.width,
        num_frames=args.frames,
        num_inference_steps=args.warmup + args.steps,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np" if args.decode else "latent",
        callback_on_step_end=on_step_end,
    )
    synchronize()
    total = time.perf_counter() - started
    times = [b - a for a, b in zip(ends[args.warmup - 1 :], ends[args.warmup :], strict=False)]
    result = {
        "option": row,
        "attention": (applied.get("attention") or {}).get("on", "native"),
        "compile": (applied.get("compile") or {}).get("on", False),
        "median_s": statistics.median(times),
        "times_s": times,
        "until_first_timed_s": ends[args.warmup - 1] - started,
        "total_s": total,
        "denoise_peak_gib": gib(denoise_peak),
        "peak_gib": gib(torch.cuda.max_memory_allocated()) if CUDA else float("nan"),
        "speed": applied,
    }
    del pipe
    torch._dynamo.reset()
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()
    return result


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    decode = "with decode" if args.decode else "no decode"
    print(
        "\n| option | attention | compile | s/step | vs plain | warm-up s | peak GiB denoising "
        f"| peak GiB ({decode}) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    plain = results[0]["median_s"]
    for r in results:
        print(
            f"| {r['option']} | {r['attention']} | {'on' if r['compile'] else 'off'} | {r['median_s']:.3f} | "
            f"{r['median_s'] / plain:.2f}x | {r['until_first_timed_s']:.1f} | {r['denoise_peak_gib']:.1f} | "
            f"{r['peak_gib']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dit", default="14b", choices=("14b", "tiny"), help="tiny: the CPU smoke run")
    parser.add_argument("--rows", default="plain,ours", help="comma list of: " + ", ".join(ROWS))
    parser.add_argument("--frames", type=int, default=None, help="default 81 (tiny: 9)")
    parser.add_argument("--height", type=int, default=None, help="default 480 (tiny: 48)")
    parser.add_argument("--width", type=int, default=None, help="default 832 (tiny: 64)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (compiling)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--decode", action="store_true", help="decode the video too (in the peak)")
    parser.add_argument("--cache-dir", default="/tmp/video-studio-bench", help="compile cache root")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    tiny = args.dit == "tiny"
    args.frames = args.frames or (9 if tiny else 81)
    args.height = args.height or (48 if tiny else 480)
    args.width = args.width or (64 if tiny else 832)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")

    gpu = torch.cuda.get_device_name() if CUDA else "none (CPU: use --dit tiny)"
    print(f"GPU: {gpu} | torch {torch.__version__}")
    print(
        f"Wan2.1 I2V {args.dit}: {args.frames} frames {args.width}x{args.height}, CFG 5, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
    )
    results = []
    for row in args.rows.split(","):
        started = time.perf_counter()
        results.append(measure(row, args))
        print(
            f"{row}: {results[-1]['median_s']:.3f} s/step, took {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    print_table(results, args)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "results": results}, indent=2, default=str)
        )


if __name__ == "__main__":
    main()
