"""MAGI-1 VAE time and peak memory at the published size with RANDOM bf16 weights (GPU; run by hand).

Builds :class:`core.magi.vae.MagiVAE` from the published ddconfig (1024 wide, 24 blocks per side) and
measures, per video size: decoding one generated chunk (6 latent frames -> 24 frames) and encoding 24
frames, each tiled as the official pipeline does (256x256 tiles, 25% overlap, 12-frame temporal tiles)
and in one pass. Random weights change no shapes, so time and memory are those of the real VAE.
There is no diffusers MAGI VAE to compare with; the ratio printed is tiled / one pass in the same run.

Example (one H100): python bench/magi_vae_speed.py --sizes 720x720,1280x720 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.magi.vae import PUBLISHED_DDCONFIG, MagiVAE
from core.magi.vae_blocks import ViTConfig


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median seconds and peak GiB of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    torch.cuda.synchronize()
    times = []
    torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="720x720,1280x720", help="WxH list")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.device("cuda"):
        vae = MagiVAE(ViTConfig(**PUBLISHED_DDCONFIG)).to(torch.bfloat16).eval()
    weights = torch.cuda.memory_allocated() / 2**30
    print(f"VAE weights {weights:.2f} GiB ({sum(p.numel() for p in vae.parameters()) / 1e6:.0f}M params)")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        latents = torch.randn(1, 16, 6, height // 8, width // 8, device="cuda", dtype=torch.bfloat16)
        video = torch.rand(1, 3, 24, height, width, device="cuda", dtype=torch.bfloat16) * 2 - 1
        rows = {
            "decode tiled": partial(vae.decode, latents),
            "decode one pass": partial(vae.decode, latents, tiled=False),
            "encode tiled": partial(vae.encode, video),
            "encode one pass": partial(vae.encode, video, tiled=False),
        }
        results = {}
        for name, fn in rows.items():
            try:
                results[name] = timed(fn, args.repeats)
            except torch.OutOfMemoryError:
                results[name] = (float("nan"), float("nan"))
            torch.cuda.empty_cache()
        for name, (seconds, peak) in results.items():
            print(f"{size} {name:16s} {seconds * 1000:9.1f} ms  peak {peak:6.2f} GiB")
        for op in ("decode", "encode"):
            ratio = results[f"{op} tiled"][0] / results[f"{op} one pass"][0]
            print(f"{size} {op} tiled / one pass time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
