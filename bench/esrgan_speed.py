"""Speed of the light fallback upscaler (Real-ESRGAN class, ``core.upscale.esrgan``) on one GPU.

Random weights of the published architectures (RealESRGAN_x4plus RRDBNet, realesr-general-x4v3 and
realesr-animevideov3 SRVGGNetCompact), fp16, frame by frame through ``ESRGANStreamer`` (512-px tiles) as
the Upscale tab runs them; prints fps and peak GPU memory per input size at x4. There is no diffusers
upscaler to compare with; FlashVSR's own figures are in ``bench/upscale_speed.py``.

    python bench/esrgan_speed.py --sizes 640x360,960x540 --frames 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.upscale.esrgan import RRDBNet, SRVGGNetCompact, build_network
from core.upscale.esrgan_stream import ESRGANStreamer
from core.upscale.sizing import plan_size

NETWORKS = {
    "x4plus": lambda: RRDBNet(),
    "general-x4v3": lambda: SRVGGNetCompact(num_conv=32),
    "animevideov3": lambda: SRVGGNetCompact(num_conv=16),
}


def measure(name: str, width: int, height: int, frames: int, device: torch.device) -> tuple[float, float]:
    """(fps, peak GiB) of ``frames`` x4 upscales of one random ``width`` x ``height`` frame."""
    network = build_network(NETWORKS[name]().state_dict()).to(device, torch.float16)
    streamer = ESRGANStreamer(network, plan_size(width, height, 4, align=2))
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    streamer.upscale(frame)  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(frames):
        streamer.upscale(frame)
    torch.cuda.synchronize()
    return frames / (time.perf_counter() - started), torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="640x360,960x540", help="comma list of input WxH")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument(
        "--networks", default=",".join(NETWORKS), help="comma list of: " + ", ".join(NETWORKS)
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/esrgan_speed.py needs a CUDA GPU")
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name()}, x4, fp16, 512-px tiles, {args.frames} frames\n")
    print("| network | input | output | fps | peak GiB |\n|---|---|---|---|---|")
    for name in args.networks.split(","):
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            fps, peak = measure(name, width, height, args.frames, device)
            print(
                f"| {name} | {width}x{height} | {4 * width}x{4 * height} | {fps:.1f} | {peak:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
