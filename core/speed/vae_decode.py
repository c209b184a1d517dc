"""Fast decode of the Wan VAE (diffusers ``AutoencoderKLWan``): streamed latent frame by latent frame.

The causal decoder already decodes one latent frame at a time with a feature cache (``_decode``); this
module runs that same loop itself so each latent frame's pixels (1 frame, then 4 per latent frame) leave
as soon as they are made, as uint8 frames copied to the host without stopping the GPU. The frames are the
pipeline's own (``vae.decode`` + ``postprocess_video`` + :func:`core.video_io.to_uint8_frames`).

Fast decode adds, on a copy of the decoder kept beside the VAE (the float32 original stays for the
encoder side and for float32 decodes): bfloat16 weights and activations, channels-last 3-D convolutions,
cuDNN autotuning and, when asked, a regional ``torch.compile`` of the decoder's blocks. bfloat16 is the
default on CUDA only until its PSNR against the float32 decode is measured per GPU
(:data:`BF16_DECODE_PSNR_DB`); the record says what ran (:meth:`DecodeSetup.to_record`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify

from core.kernels.causal_conv3d import triton_available
from core.speed.config import SpeedConfig
from core.speed.vae_kernels import use_kernels

FAST_DECODER_ATTR = "_video_studio_fast_decoder"
"""Where the VAE keeps its converted decoder copy: ``(key, decoder)`` (the key: see :func:`fast_decoder`)."""
MIN_PSNR_DB = 45.0
"""The bar a faster decode must clear against the float32 decode to count as lossless."""
BF16_DECODE_PSNR_DB: dict[str, float] = {"NVIDIA H100 80GB HBM3": 48.3}
"""Measured PSNR (dB) of the bfloat16 decode against float32, by GPU name (``bench/wan_vae_speed.py``:
480p 81 frames, the Wan2.1 VAE's shape with random weights, 2026-12-07; real weights not measured).
Until a GPU has its figure, ``auto`` turns bfloat16 on for every CUDA GPU."""
CONV_KERNELS: dict[str, str] = {"NVIDIA H100 80GB HBM3": "pointer"}
"""By GPU name, the implicit-GEMM kernel measured faster than cuDNN for the whole bfloat16 decode
(``bench/wan_vae_speed.py``; :data:`core.kernels.causal_conv3d.METHODS`); GPUs not listed keep cuDNN.
H100, 480p 81 frames, 4 latent frames a call: cuDNN 1.639 s, ``pointer`` 0.996 s (PSNR 49.6 dB against
the float32 decode), ``tma`` 0.965 s. ``pointer`` is used: its tunings are kept on disk (``tma`` re-tunes
in every process, 34 s) and it compiles without a graph break."""
MAX_CHUNK = 4
"""Latent frames per decoder call after the first, on a GPU with memory for them: fewer, larger
convolutions than one latent frame at a time (the same maths: the causal cache carries across calls)."""
CHUNK_BYTES_PER_PIXEL = 5500.0
"""Extra GPU memory of each further latent frame in a call, per output pixel of a frame (bfloat16):
measured 5.4 KB (H100, 480p: peak 10.98 GiB at 4 latent frames a call against 4.94 GiB at 1)."""
DECODER_BLOCKS = ("mid_block", "up_blocks")
"""The decoder's children compiled one by one (regional compile, as the DiT's blocks are)."""
RECOMPILE_LIMIT = 64
"""Graphs dynamo may keep per compiled function: the up blocks share one ``forward`` over several widths,
the first and later latent frames and empty and filled caches (the default 8 fell back to eager)."""


@dataclass(frozen=True)
class DecodeSetup:
    """How one job's latents are decoded, and why."""

    dtype: torch.dtype
    channels_last: bool
    cudnn_benchmark: bool
    compile: bool
    stream: bool
    reason: str
    chunk: int = 1
    conv_kernel: str = ""
    """The decoder's convolutions on our implicit-GEMM kernel of that name (:mod:`core.speed.vae_kernels`,
    :data:`core.kernels.causal_conv3d.METHODS`); empty: torch's (cuDNN)."""

    def to_record(self) -> dict[str, Any]:
        return {
            "dtype": str(self.dtype).removeprefix("torch."),
            "channels_last": self.channels_last,
            "cudnn_benchmark": self.cudnn_benchmark,
            "compile": self.compile,
            "chunk": self.chunk,
            "conv_kernel": self.conv_kernel or "torch",
            "stream": self.stream,
            "reason": self.reason,
        }


def _fast_on(setting: bool | str, device: torch.device) -> tuple[bool, str]:
    if setting != "auto":
        return bool(setting), "asked for" if setting else "turned off: float32, the pipeline's own maths"
    if device.type != "cuda":
        return False, f"auto: float32 on {device.type}"
    measured = BF16_DECODE_PSNR_DB.get(torch.cuda.get_device_name(device))
    if measured is None:
        return True, "auto: bfloat16 on CUDA (PSNR against float32 not measured on this GPU yet)"
    if measured < MIN_PSNR_DB:
        return False, f"auto: bfloat16 measured {measured:.1f} dB < {MIN_PSNR_DB:.0f} dB here: float32"
    return True, f"auto: bfloat16 measured {measured:.1f} dB against float32 on this GPU"


def tiles(vae: Any, latents: torch.Tensor) -> bool:
    """Whether ``vae`` would decode ``latents`` in tiles (memory level 1 and up, frames over a tile)."""
    height, width = latents.shape[-2:]
    ratio = vae.spatial_compression_ratio
    return bool(vae.use_tiling) and (
        width > vae.tile_sample_min_width // ratio or height > vae.tile_sample_min_height // ratio
    )


def decode_setup(config: SpeedConfig, vae: Any, latents: torch.Tensor, device: torch.device) -> DecodeSetup:
    """The decode ``config`` asks for on ``device``; a tiled VAE decodes whole with its own tiled decode
    in float32 (tile by tile, so its frames cannot stream)."""
    if tiles(vae, latents):
        why = "the memory level decodes in tiles (the VAE's own tiled decode, float32, not streamed)"
        return DecodeSetup(vae.dtype, False, False, False, False, why)
    fast, reason = _fast_on(config.fast_decode, device)
    dtype = torch.bfloat16 if fast else vae.dtype
    cuda = device.type == "cuda"
    height, width = (side * vae.spatial_compression_ratio for side in latents.shape[-2:])
    chunk = decode_chunk(spare_gpu_bytes(device), height * width) if fast and cuda else 1
    kernel = (
        CONV_KERNELS.get(torch.cuda.get_device_name(device), "")
        if fast and cuda and triton_available()
        else ""
    )
    return DecodeSetup(dtype, fast, fast and cuda, config.compile_decode, True, reason, chunk, kernel)


def decode_chunk(spare_bytes: int, pixels: int) -> int:
    """Latent frames per decoder call after the first: up to :data:`MAX_CHUNK` while each further one's
    activations (:data:`CHUNK_BYTES_PER_PIXEL` per output pixel) fit in half the ``spare_bytes``."""
    extra = CHUNK_BYTES_PER_PIXEL * pixels
    return max(1, min(MAX_CHUNK, 1 + int(spare_bytes / 2 // extra)))


def spare_gpu_bytes(device: torch.device) -> int:
    """GPU memory free for the decode: free on the device plus what the allocator holds unused."""
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def fast_decoder(vae: Any, setup: DecodeSetup) -> torch.nn.Module:
    """``vae.decoder`` converted for ``setup`` (the VAE's own one when nothing changes it), made once per
    loaded VAE and kept on it; a later job asking something else replaces the copy."""
    key = (setup.dtype, setup.channels_last, setup.compile, setup.conv_kernel)
    if key == (vae.dtype, False, False, ""):
        return vae.decoder
    kept = getattr(vae, FAST_DECODER_ATTR, None)
    if kept is not None and kept[0] == key:
        return kept[1]
    object.__setattr__(vae, FAST_DECODER_ATTR, None)  # free the old copy before making the new one
    decoder = copy.deepcopy(vae.decoder).to(dtype=setup.dtype).eval()
    if setup.channels_last:
        for param in decoder.parameters():
            if param.dim() == 5:
                param.data = param.data.contiguous(memory_format=torch.channels_last_3d)
    if setup.conv_kernel:
        use_kernels(decoder, setup.conv_kernel)
    if setup.compile:
        dynamo = torch._dynamo.config
        dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
        for name in DECODER_BLOCKS:
            for block in _blocks(getattr(decoder, name)):
                block.compile(dynamic=False)
    object.__setattr__(vae, FAST_DECODER_ATTR, (key, decoder))  # not a submodule: no state dict, no .to()
    return decoder


def _blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    return list(module) if isinstance(module, torch.nn.ModuleList) else [module]


def denormalize(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The pipeline's latents as the VAE takes them, by the pipeline's maths (``latents / (1 / std) +
    mean``, on the VAE's device in its dtype)."""
    config = vae.config
    device = next(vae.parameters()).device
    latents = latents.to(device=device, dtype=vae.dtype)
    shape = (1, config.z_dim, 1, 1, 1)
    mean = torch.tensor(config.latents_mean).view(shape).to(device, latents.dtype)
    inverse_std = 1.0 / torch.tensor(config.latents_std).view(shape).to(device, latents.dtype)
    return latents / inverse_std + mean


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Decoder output (1, 3, T, H, W) as uint8 (T, H, W, 3), by the pipeline's maths: clamp to [-1, 1],
    ``x * 0.5 + 0.5`` clamped to [0, 1], then ``x * 255 + 0.5`` truncated."""
    pixels = pixels.float().clamp(-1.0, 1.0)
    pixels = (pixels * 0.5 + 0.5).clamp(0.0, 1.0)
    return (pixels * 255.0 + 0.5).to(torch.uint8)[0].permute(1, 2, 3, 0)


class PendingFrames:
    """uint8 frames (T, H, W, 3) on their way to the host; :meth:`wait` gives them once copied."""

    def __init__(self, frames: torch.Tensor) -> None:
        self.count = frames.shape[0]
        frames = frames.contiguous()
        if frames.device.type != "cuda":
            self._host, self._ready = frames, None
            return
        self._host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
        self._host.copy_(frames, non_blocking=True)
        self._ready = torch.cuda.Event()
        self._ready.record()

    def wait(self) -> np.ndarray:
        if self._ready is not None:
            self._ready.synchronize()
        return self._host.numpy()


@torch.inference_mode()
def decode_stream(vae: Any, latents: torch.Tensor, setup: DecodeSetup) -> Iterator[PendingFrames]:
    """Decode the pipeline's ``latents`` (1, C, F, H, W) as ``setup`` says: one :class:`PendingFrames` per
    decoder call (the first latent frame gives 1 frame, then ``setup.chunk`` latent frames 4 each), or one
    for the whole video when the VAE tiles. The GPU is never waited on here: the consumer waits for each
    copy."""
    if setup.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    z = denormalize(vae, latents)
    if not setup.stream:
        yield PendingFrames(to_uint8(vae.decode(z, return_dict=False)[0]))
        return
    decoder = fast_decoder(vae, setup)
    x = vae.post_quant_conv(z).to(setup.dtype)
    if setup.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    causal = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
    cache: list[torch.Tensor | None] = [None] * causal
    index = 0
    while index < x.shape[2]:
        size = 1 if index == 0 else setup.chunk
        part = x[:, :, index : index + size]
        out = decoder(part, feat_cache=cache, feat_idx=[0], first_chunk=index == 0)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        yield PendingFrames(to_uint8(out))
        index += size
