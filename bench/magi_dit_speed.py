"""MAGI-1 DiT generation loop speed and memory with RANDOM weights at the published shapes (GPU; by hand).

Builds :class:`core.magi.dit.MagiDiT` from the published architecture (``--variant``, default 4.5B_distill)
with random weights in bf16 (embedders and norms float32, as published) and runs :func:`core.magi.generate`
end to end with a stand-in VAE (decode = zeros), once per window size. Prints per-step time, peak memory
and the KV cache held. Random weights say nothing about quality; the timings and memory are real.

Example (one H100): python bench/magi_dit_speed.py --variant 4.5B_distill --size 720 --chunks 4 --steps 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.magi import MagiDiT, generate, preset
from core.magi.dit import keeps_float32


class ZeroVAE:
    temporal_factor, spatial_factor, latent_channels = 4, 8, 16

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = video.shape
        return torch.zeros(b, 16, t // 4, h // 8, w // 8, device=video.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = latents.shape
        return torch.zeros(b, 3, t * 4, h * 8, w * 8, device=latents.device)


def random_model(variant: str) -> MagiDiT:
    with torch.device("cuda"):
        model = MagiDiT(preset(variant))
    for name, param in model.named_parameters():
        if name != "rope.bands":
            torch.nn.init.normal_(param, std=0.02)
        param.data = param.data.to(torch.float32 if keeps_float32(name) else torch.bfloat16)
    return model.eval().requires_grad_(False)


def _synced_now() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="4.5B_distill")
    parser.add_argument("--size", type=int, default=720)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--windows", default="4,1")
    args = parser.parse_args()
    model = random_model(args.variant)
    print(
        f"{args.variant}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, "
        f"weights {torch.cuda.memory_allocated() / 2**30:.1f} GiB"
    )
    caption = torch.randn(1, 120, 4096, device="cuda")
    mask = torch.ones(1, 120, dtype=torch.bool, device="cuda")
    for window in (int(w) for w in args.windows.split(",")):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        stats: dict = {}
        steps_done: list[float] = []
        start = time.perf_counter()
        generate(
            model,
            ZeroVAE(),
            caption,
            mask,
            num_chunks=args.chunks,
            height=args.size,
            width=args.size,
            steps=args.steps,
            guidance=args.guidance,
            seed=0,
            window_size=window,
            stats=stats,
            on_step=lambda i, n, done=steps_done: done.append(_synced_now()),
        )
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        per_step = (steps_done[-1] - steps_done[0]) / max(1, len(steps_done) - 1)
        print(
            f"window {window}: {total:.1f} s total, {len(steps_done)} steps, {per_step * 1000:.0f} ms/step, "
            f"{stats['dit_calls']} DiT calls, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, "
            f"KV {stats['kv_tokens']} tokens/layer ({stats['kv_bytes'] / 2**30:.2f} GiB)"
        )


if __name__ == "__main__":
    main()
