"""Wan2.1 VAE decode time, peak memory and PSNR against the float32 decode, per variant (GPU; run by hand).

Builds diffusers' ``AutoencoderKLWan`` with its default (Wan2.1) config and RANDOM weights (seed 0) on the
GPU and decodes the same random latents of a 480p 81-frame video (16 x 21 x 60 x 104) in each variant:

- ``plain fp32``: ``vae.decode`` as the diffusers Wan pipelines run it (the VAE loaded in float32);
- dtype (bf16, fp16), ``channels_last_3d`` weights and activations, ``cudnn.benchmark`` and a regional
  ``torch.compile`` of the decoder's blocks, alone and together;
- ``stream``: the same causal loop as diffusers' ``_decode`` with the frames kept in a list (diffusers
  concatenates the growing output at every latent frame);
- ``app ...``: the app's own streamed decode (``core.speed.vae_decode.decode_stream``, uint8 frames to
  pinned host memory included) in bfloat16 channels-last with cuDNN autotuning, per chunk size (latent
  frames per decoder call after the first).

``--profile NAME`` prints the top CUDA kernels of one more decode of that variant.

PSNR is over frames mapped to [0, 1] against ``plain fp32``. Random weights change no shapes, so time and
memory are those of the real VAE; PSNR on random weights is a proxy for the real decoder's (say so).

Example (one H100): python bench/wan_vae_speed.py --json vae.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.speed.vae_decode import DecodeSetup, decode_stream, to_uint8


@dataclass(frozen=True)
class Variant:
    """One way to decode: dtype, memory layout, convolution autotuning, compile, streamed loop; or the
    app's decode (``app``) with its chunk size."""

    name: str
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    stream: bool = False
    app: bool = False
    chunk: int = 1
    conv_kernel: str = ""
    """``pointer`` or ``tma``: the decoder on that Triton kernel (``core.kernels.causal_conv3d``)."""


VARIANTS = [
    Variant("plain fp32"),
    Variant("fp32 cudnn.benchmark", cudnn_benchmark=True),
    Variant("fp32 stream", stream=True),
    Variant("bf16", torch.bfloat16),
    Variant("bf16 stream", torch.bfloat16, stream=True),
    Variant("bf16 channels_last", torch.bfloat16, channels_last=True, stream=True),
    Variant("bf16 cudnn.benchmark", torch.bfloat16, cudnn_benchmark=True, stream=True),
    Variant("bf16 cl+bench", torch.bfloat16, channels_last=True, cudnn_benchmark=True, stream=True),
    Variant("fp16 cl+bench", torch.float16, channels_last=True, cudnn_benchmark=True, stream=True),
    Variant("bf16 cl+bench+compile", torch.bfloat16, True, True, compile=True, stream=True),
    *(Variant(f"app chunk{chunk}", app=True, chunk=chunk) for chunk in (1, 2, 4, 5)),
    *(
        Variant(f"app chunk{chunk} {kernel}", app=True, chunk=chunk, conv_kernel=kernel)
        for chunk in (1, 4)
        for kernel in ("pointer", "tma")
    ),
]


def stream_decode(vae, z: torch.Tensor) -> torch.Tensor:
    """diffusers' causal ``_decode`` loop with the frames gathered once at the end."""
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    frames = []
    for i in range(x.shape[2]):
        vae._conv_idx = [0]
        frames.append(
            vae.decoder(
                x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0
            )
        )
    vae.clear_cache()
    return torch.cat(frames, 2).clamp_(-1.0, 1.0)


def build(variant: Variant, base_state: dict) -> Callable[[torch.Tensor], torch.Tensor]:
    from diffusers import AutoencoderKLWan

    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    with torch.device("cuda"):
        vae = AutoencoderKLWan()
    vae.load_state_dict(base_state)
    if variant.app:
        return app_decode(variant, vae.eval().requires_grad_(False))
    vae = vae.to(variant.dtype).eval().requires_grad_(False)
    if variant.channels_last:
        for module in vae.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
    if variant.compile:
        for block in [*vae.decoder.up_blocks, vae.decoder.mid_block]:
            block.compile(dynamic=False)

    def decode(z: torch.Tensor) -> torch.Tensor:
        z = z.to(variant.dtype)
        if variant.channels_last:
            z = z.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            if variant.stream:
                return stream_decode(vae, z)
            return vae.decode(z, return_dict=False)[0]

    return decode


def app_decode(variant: Variant, vae) -> Callable[[torch.Tensor], torch.Tensor]:
    """The app's streamed decode of the pipeline's (normalized) latents; uint8 frames (T, H, W, 3)."""
    setup = DecodeSetup(torch.bfloat16, True, True, False, True, "bench", variant.chunk, variant.conv_kernel)
    config = vae.config
    shape = (1, config.z_dim, 1, 1, 1)
    mean = torch.tensor(config.latents_mean).view(shape).cuda()
    inverse_std = 1.0 / torch.tensor(config.latents_std).view(shape).cuda()

    def decode(z: torch.Tensor) -> torch.Tensor:
        normalized = (z - mean) * inverse_std  # decode_stream undoes this, as the pipeline's latents
        parts = [pending.wait() for pending in decode_stream(vae, normalized, setup)]
        return torch.from_numpy(np.concatenate(parts))

    return decode


def as_uint8(frames: torch.Tensor) -> torch.Tensor:
    """A decode's frames as uint8 (T, H, W, 3): the app rows give them so, the others in [-1, 1]."""
    return frames.cpu() if frames.dtype == torch.uint8 else to_uint8(frames).cpu()


def profile(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, top: int = 25) -> None:
    """Print the ``top`` CUDA kernels of one decode by total time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        decode(z)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=70))


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two decodes' uint8 frames."""
    mse = ((a.float() - b.float()) / 255).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="832x480", help="WxH of the video")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="", help="comma list of variant names (default: all)")
    parser.add_argument("--json", default="")
    parser.add_argument("--profile", default="", help="a variant name: print its top CUDA kernels")
    parser.add_argument(
        "--full-tuning",
        action="store_true",
        help="time every tile of the pointer kernel, not the table's (kernels/conv3d_tiles.json); the "
        "winners go into the JSON as pointer_tiles (bench/conv_tiles.py merges them into the table)",
    )
    args = parser.parse_args()
    if args.full_tuning:
        from core.kernels import triton_conv3d

        triton_conv3d.USE_MEASURED_TILES = False
    from diffusers import AutoencoderKLWan

    width, height = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    base_state = {k: v.cuda() for k, v in AutoencoderKLWan().state_dict().items()}
    generator = torch.Generator("cuda").manual_seed(0)
    z = torch.randn(
        1, 16, (args.frames - 1) // 4 + 1, height // 8, width // 8, device="cuda", generator=generator
    )
    wanted = set(filter(None, args.variants.split(",")))
    reference = None
    rows = []
    for variant in VARIANTS:
        if wanted and variant.name not in wanted:
            continue
        decode = build(variant, base_state)
        start = time.perf_counter()
        out = decode(z)
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = decode(z)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds = sorted(times)[len(times) // 2]
        frames = as_uint8(out)
        if reference is None:
            reference = frames
        row = {
            "variant": variant.name,
            "seconds": round(seconds, 3),
            "first_call_s": round(first, 2),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "psnr_db": round(psnr_uint8(frames, reference), 2),
            "frames": frames.shape[0],
        }
        rows.append(row)
        print(
            f"{variant.name:24s} {seconds:7.3f} s  first {first:6.2f} s  peak {row['peak_gib']:6.2f} GiB  "
            f"PSNR {row['psnr_db']:6.2f} dB  x{rows[0]['seconds'] / seconds:.2f}",
            flush=True,
        )
        if variant.name == args.profile:
            profile(decode, z)
        del decode, out
        torch.cuda.empty_cache()
    info = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "size": args.size, "rows": rows}
    if args.full_tuning:
        from bench.conv_tiles import tuned_rows

        info["pointer_tiles"] = tuned_rows()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=1)


if __name__ == "__main__":
    main()
