"""Speed of video continuation on one GPU: plain diffusers vs this app, without and with the chunk cache.

Builds SkyReels-V2 DF 1.3B 540P shapes with random weights (or loads real ones with ``--weights``), then
extends a 960x544 24 fps clip by ``--seconds`` (4 s: 96 frames, windows of 97 frames, overlap 17) with

  1. plain diffusers: ``SkyReelsV2DiffusionForcingVideoToVideoPipeline.__call__``, nothing added,
  2. this app without cache (``core.tasks.continuation.generate_continuation``),
  3. this app with flowcache at each ``--thresholds`` value,

all in one process, and prints seconds, the ratio to plain diffusers, chunk-step counts and the PSNR of
the new frames against the uncached run. Random weights make the cache decide on meaningless
embeddings; use ``--weights`` with the real model for representative reuse and quality.

    python bench/continue_speed.py                 # full: 50 steps
    python bench/continue_speed.py --steps 10      # shorter
    python bench/continue_speed.py --ar-step 5 --causal-block-size 5   # asynchronous (causal chunks)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wan_shapes import wan_config
from core.continuation import ContinueRequest
from core.hardware import compute_dtype
from core.jobs import Job
from core.tasks.continuation import generate_continuation
from core.tiny.wan import load_tokenizer, umt5_text_encoder
from core.video_input import last_frames, open_input
from core.video_io import write_video

MODEL = "skyreels-v2-df-1.3b-540p"
TRANSFORMER_1_3B = {**wan_config("1.3b"), "inject_sample_info": True, "num_frame_per_block": 1}


def random_pipeline(device: torch.device, folder: Path):
    """The 1.3B DF pipeline with random weights; a 1-layer 4096-wide text encoder stands in for UMT5-XXL."""
    from diffusers import (
        AutoencoderKLWan,
        SkyReelsV2DiffusionForcingVideoToVideoPipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )

    dtype = compute_dtype(device)
    torch.manual_seed(0)
    with torch.device(device):
        transformer = SkyReelsV2Transformer3DModel(**TRANSFORMER_1_3B)
        vae = AutoencoderKLWan().to(torch.float32)
        text_encoder = umt5_text_encoder(4096, d_kv=64, d_ff=256, num_layers=1, num_heads=8, vocab_size=128)
        text_encoder = text_encoder.to(dtype)
    keep = transformer._keep_in_fp32_modules
    for name, parameter in transformer.named_parameters():  # as from_pretrained(torch_dtype=...) would
        if not any(part in keep for part in name.split(".")):
            parameter.data = parameter.data.to(dtype)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=8.0
    )
    pipe = SkyReelsV2DiffusionForcingVideoToVideoPipeline(
        tokenizer=load_tokenizer(folder / "tokenizer"),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def real_pipeline(device: torch.device, weights: Path):
    from core.pipelines import load_diffusers_pipeline
    from weights.registry import get_card

    return load_diffusers_pipeline(get_card(MODEL), weights, device)


def make_input(folder: Path, frames: int) -> Path:
    """A 960x544 24 fps clip of moving gradients."""
    x = np.linspace(0, 1, 960, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, 544, dtype=np.float32)[:, None, None]
    clip = np.stack([np.broadcast_to((x + y + i / frames) % 1.0, (544, 960, 3)) for i in range(frames)])
    return write_video(folder / "input.mp4", clip, 24)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(run) -> tuple[float, object]:
    synchronize()
    started = time.perf_counter()
    result = run()
    synchronize()
    return time.perf_counter() - started, result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--input-frames", type=int, default=97)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--ar-step", type=int, default=0)
    parser.add_argument("--causal-block-size", type=int, default=0)
    parser.add_argument("--weights", type=Path, help="folder of the real SkyReels-V2-DF-1.3B-540P-Diffusers")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here; pass --device cpu only for a (very slow) dry run")
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    folder = Path(tempfile.mkdtemp(prefix="continue-bench-"))
    pipe = real_pipeline(device, args.weights) if args.weights else random_pipeline(device, folder)
    clip = make_input(folder, args.input_frames)

    def request(cache: dict | None, steps: int = args.steps) -> ContinueRequest:
        return ContinueRequest(
            model=MODEL,
            video=str(clip),
            prompt="a cat walks along a sunny street",
            seconds=args.seconds,
            steps=steps,
            seed=42,
            ar_step=args.ar_step,
            causal_block_size=args.causal_block_size,
            cache=cache,
        )

    base = request(None)
    video = open_input(clip, base.card, min_frames=base.overlap_history)
    context = last_frames(video, base.overlap_history)
    print(
        f"{video.describe(base.overlap_history)}; adding {base.add_frames} frames, {args.steps} steps, "
        f"ar_step {base.ar_step}, causal block {base.causal_block_size}, {gpu}"
    )

    def ours(req: ContinueRequest):
        return generate_continuation(pipe, req, video, context, Job(req))

    def plain():
        from PIL import Image

        torch.manual_seed(base.seed)
        return pipe(
            video=[Image.fromarray(f) for f in context],
            prompt=base.prompt,
            negative_prompt=base.negative_prompt,
            height=video.height,
            width=video.width,
            num_frames=base.overlap_history + base.add_frames,
            num_inference_steps=base.steps,
            guidance_scale=base.guidance,
            generator=torch.Generator("cpu").manual_seed(base.seed),
            output_type="np",
            overlap_history=base.overlap_history,
            addnoise_condition=base.addnoise_condition,
            base_num_frames=base.base_num_frames,
            ar_step=base.ar_step,
            causal_block_size=base.causal_block_size,
            fps=24,
        )

    ours(request(None, steps=2))  # warm-up: kernels, allocator
    plain_s, _ = timed(plain)
    rows = [("plain diffusers", plain_s, None, None)]
    print(f"  done plain diffusers: {plain_s:.1f} s", flush=True)
    ours_s, (reference, _) = timed(lambda: ours(base))
    rows.append(("app, no cache", ours_s, None, math.inf))
    print(f"  done app, no cache: {ours_s:.1f} s", flush=True)
    for threshold in args.thresholds:
        cache = {"threshold": threshold, "warmup": args.warmup}
        seconds, (frames, stats) = timed(lambda c=cache: ours(request(c)))
        rows.append((f"app, flowcache {threshold:g}", seconds, stats, psnr(frames, reference)))
        print(f"  done flowcache {threshold:g}: {seconds:.1f} s, {stats}", flush=True)
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    header = ("seconds", "x plain", "speedup", "computed", "reused", "PSNR dB")
    print(f"{'run':<24}" + "".join(f"{h:>10}" for h in header))
    for name, seconds, stats, quality in rows:
        computed = stats["chunk_steps_computed"] if stats else "-"
        reused = stats["chunk_steps_reused"] if stats else "-"
        quality_text = "-" if quality is None else ("inf" if math.isinf(quality) else f"{quality:.1f}")
        print(
            f"{name:<24}{seconds:>10.2f}{seconds / plain_s:>10.3f}{plain_s / seconds:>10.2f}"
            f"{computed!s:>10}{reused!s:>10}{quality_text:>10}"
        )


if __name__ == "__main__":
    main()
