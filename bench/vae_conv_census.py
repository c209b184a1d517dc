"""Where the Wan VAE decode's convolution time goes, shape by shape (GPU; run by hand).

Records every ``F.conv3d`` / ``F.conv2d`` call of one app decode (``core.speed.vae_decode.decode_stream``:
bfloat16, channels-last, 4 latent frames a call) of a 480p 81-frame video on the Wan2.1 VAE with random
weights, then times each distinct call alone (cuDNN, autotuned) and prints its count, milliseconds, share
of the total and TFLOP/s. With ``--triton`` it also times our two Triton kernels
(``core.kernels.triton_conv3d``, ``core.kernels.triton_conv3d_tma``) on each and checks them against
cuDNN; they take the causal convolutions' input without the spatial padding diffusers copies in (they
mask it), so the copy they save is not timed.

Example (one H100): python bench/vae_conv_census.py --triton --json census.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.upscale_attention import cuda_time
from core.kernels.causal_conv3d import prepare_weight, runs_kernel
from core.kernels.triton_conv3d import conv3d_triton
from core.kernels.triton_conv3d_tma import conv3d_tma
from core.speed.vae_decode import DecodeSetup, decode_stream


def census(size: str, frames: int) -> Counter:
    """(function, input shape, weight shape, padding, bias) of every convolution of one decode, counted."""
    from diffusers import AutoencoderKLWan

    width, height = (int(v) for v in size.split("x"))
    torch.manual_seed(0)
    with torch.device("cuda"):
        vae = AutoencoderKLWan().eval().requires_grad_(False)
    z = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device="cuda")
    calls: Counter = Counter()
    real = {"conv3d": F.conv3d, "conv2d": F.conv2d}

    def recorder(name):
        def conv(x, weight, bias=None, stride=1, padding=0, *args):
            pads = tuple(padding) if isinstance(padding, (tuple, list)) else padding
            calls[(name, tuple(x.shape), tuple(weight.shape), pads, bias is not None)] += 1
            return real[name](x, weight, bias, stride, padding, *args)

        return conv

    setup = DecodeSetup(torch.bfloat16, True, True, False, True, "census", 4)
    with (
        mock.patch.object(F, "conv3d", recorder("conv3d")),
        mock.patch.object(F, "conv2d", recorder("conv2d")),
        torch.inference_mode(),
    ):
        for pending in decode_stream(vae, z, setup):
            pending.wait()
    return calls


def flops(x_shape, w_shape, padding) -> float:
    """Multiply-adds x2 of a stride-1 convolution of an input ``x_shape`` padded by ``padding`` per side."""
    cout, cin, *kernel = w_shape
    pads = padding if isinstance(padding, tuple) else (padding,) * len(kernel)
    outputs = x_shape[0] * cout
    for length, k, pad in zip(x_shape[2:], kernel, pads, strict=True):
        outputs *= length + 2 * pad - k + 1
    return 2.0 * outputs * cin * math.prod(kernel)


def kernel_operands(name: str, x: torch.Tensor, w: torch.Tensor, pad) -> tuple:
    """What our kernel takes for the same convolution: a 2-D one as one-frame 3-D; a causal one's input
    without the spatial padding diffusers copies in (the kernel masks it; the time padding is the cache's
    frames, already in ``x``)."""
    if name == "conv2d":
        return x.unsqueeze(2), w.unsqueeze(2), (0, *pad)
    ph, pw = (w.shape[3] - 1) // 2, (w.shape[4] - 1) // 2
    inner = x[:, :, :, ph : x.shape[3] - ph, pw : x.shape[4] - pw]
    return inner.contiguous(memory_format=torch.channels_last_3d), w, (0, ph, pw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--triton", action="store_true", help="also time core.kernels.causal_conv3d")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    calls = census(args.size, args.frames)
    rows = []
    for (name, x_shape, w_shape, pad, has_bias), count in calls.items():
        memory = torch.channels_last_3d if name == "conv3d" else torch.channels_last
        x = torch.randn(x_shape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=memory)
        w = torch.randn(w_shape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=memory) * 0.05
        b = torch.randn(w_shape[0], device="cuda", dtype=torch.bfloat16) if has_bias else None
        conv = getattr(F, name)
        ms = cuda_time(lambda conv=conv, x=x, w=w, b=b, pad=pad: conv(x, w, b, 1, pad))
        work = flops(x_shape, w_shape, pad)
        row = {
            "conv": name,
            "x": x_shape,
            "w": w_shape,
            "padding": pad,
            "count": count,
            "ms": round(ms, 3),
            "total_ms": round(ms * count, 1),
            "tflops": round(work / ms / 1e9, 1),
        }
        if args.triton and runs_kernel(x, w):
            frames, w5, padding = kernel_operands(name, x, w, pad)
            prepared = prepare_weight(w5)
            _, ph, pw = padding
            reference = F.conv3d(F.pad(frames, (pw, pw, ph, ph)), w5, b)
            reference = reference.squeeze(2) if name == "conv2d" else reference
            for label, method in (("triton", conv3d_triton), ("tma", conv3d_tma)):
                if label == "tma" and w_shape[0] % 8:
                    continue
                try:
                    ours = method(frames, prepared, b, padding)
                except Exception as error:  # a kernel that fails to build here: say so, go on
                    row[f"{label}_error"] = repr(error)[:300]
                    continue
                ours = ours.squeeze(2) if name == "conv2d" else ours
                row[f"{label}_ms"] = round(
                    cuda_time(lambda f=frames, q=prepared, b=b, p=padding, m=method: m(f, q, b, p)), 3
                )
                row[f"{label}_tflops"] = round(work / row[f"{label}_ms"] / 1e9, 1)
                row[f"{label}_max_err"] = (ours.float() - reference.float()).abs().max().item()
            row["reference_max"] = reference.float().abs().max().item()
        rows.append(row)
        print(json.dumps(row), flush=True)
    total = sum(r["total_ms"] for r in rows)
    print(f"convolutions alone: {total:.0f} ms")
    if args.triton:
        for label in ("triton", "tma"):
            best = sum(min(r.get(f"{label}_ms", r["ms"]), r["ms"]) * r["count"] for r in rows)
            print(f"with {label} where faster: {best:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
