"""The rows of bench/upscale_speed.py: FlashVSR with random weights of the real v1.1 config, per variant,
scale and speed option, and the input clip each row upscales."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.upscale.config import FlashVSRConfig
from core.upscale.dit import StreamingWanDiT
from core.upscale.full_vae import StreamingVAEDecoder, build_vae
from core.upscale.loading import FlashVSRModel
from core.upscale.lq_projection import CausalLQProjection
from core.upscale.sizing import plan_size, resize_and_crop
from core.upscale.speed import ALL_ON, VSRSpeed
from core.upscale.tc_decoder import TinyConditionalDecoder

LOSSLESS_ALL = VSRSpeed(compile=True, cuda_graphs=True, overlap_decode=True)
"""Every option that keeps the official maths."""
SOURCES = {4: (352, 192), 2: (704, 384)}
"""Input size per scale: both give 1408x768 (the DiT's cost depends only on the output size)."""
TINY_SOURCES = {4: (32, 32), 2: (64, 64)}


@dataclass(frozen=True)
class Row:
    variant: str = "tiny-long"
    scale: int = 4
    speed: VSRSpeed = field(default_factory=VSRSpeed)
    offload: bool = False
    reference: str = "baseline"
    """The row whose frames this one's are compared with (same input, same seed)."""
    short: bool = False
    """Runs the short clip (``--short-frames``): slow rows that would eat the time budget."""
    gpus: int = 1
    """The app's pipeline split (``pipeline_gpus``): the DiT's blocks in halves over this many GPUs."""


ROWS = {
    "baseline": Row(),
    "compile": Row(speed=VSRSpeed(compile=True)),
    "cuda-graphs": Row(speed=VSRSpeed(compile=True, cuda_graphs=True)),
    "overlap": Row(speed=VSRSpeed(overlap_decode=True)),
    "compile-overlap": Row(speed=VSRSpeed(compile=True, overlap_decode=True)),
    "kv-fp8": Row(speed=VSRSpeed(kv_cache="fp8")),
    "flex": Row(speed=VSRSpeed(attention="flex")),
    "dense": Row(speed=VSRSpeed(attention="dense")),
    "lossless-all": Row(speed=LOSSLESS_ALL),
    "all": Row(speed=ALL_ON),
    "kv-offload-prefetch": Row(speed=VSRSpeed(kv_prefetch=True), offload=True),
    "x2-baseline": Row(scale=2, reference="x2-baseline", short=True),
    "x2-all": Row(scale=2, speed=ALL_ON, reference="x2-baseline", short=True),
    "full-baseline": Row(variant="full", reference="full-baseline", short=True),
    "full-all": Row(variant="full", speed=ALL_ON, reference="full-baseline", short=True),
    "kv-offload": Row(offload=True, short=True),
    "pipeline-2gpu": Row(gpus=2),
    "pipeline-2gpu-overlap": Row(speed=VSRSpeed(overlap_decode=True), gpus=2),
}
"""In order of use: when the time budget runs out, the last rows are skipped."""


def random_model(
    variant: str, device: torch.device, dtype: torch.dtype, config: FlashVSRConfig | None = None
) -> FlashVSRModel:
    """FlashVSR with random weights of ``config`` (default: the real v1.1 sizes; no files needed)."""
    torch.manual_seed(0)
    config = config or FlashVSRConfig()
    with torch.device(device):
        dit = StreamingWanDiT(config.dit)
        lq = CausalLQProjection(config.lq_projection)
        decoder = TinyConditionalDecoder(config.tc_decoder) if variant == "tiny-long" else None
        vae = build_vae(config.vae) if variant == "full" else None
    for module in (dit, lq, decoder, vae):
        if module is not None:
            module.to(dtype).eval()
    context = torch.randn(1, 512, config.dit.text_dim, device=device) * 0.1
    model = FlashVSRModel(variant, config, dit, lq, context, tc_decoder=decoder)
    if vae is not None:
        model.vae_decoder = StreamingVAEDecoder(vae)
    dit.prepare(context)
    return model


def source_pool(scale: int, count: int = 8, tiny: bool = False) -> list[np.ndarray]:
    """``count`` random low-resolution frames (blocky noise), upscaled and cropped as the app does;
    ``tiny``: sources for a 128x128 output (the CPU smoke test)."""
    width, height = (TINY_SOURCES if tiny else SOURCES)[scale]
    size = plan_size(width, height, scale)
    rng = np.random.default_rng(scale)
    pool = []
    for _ in range(count):
        coarse = rng.integers(0, 255, (height // 4, width // 4, 3), dtype=np.uint8)
        small = np.repeat(np.repeat(coarse, 4, 0), 4, 1)
        noisy = np.clip(small.astype(int) + rng.integers(-12, 13, small.shape), 0, 255).astype(np.uint8)
        pool.append(resize_and_crop(noisy, size))
    return pool
