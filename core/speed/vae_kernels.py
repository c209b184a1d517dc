"""The Wan VAE decoder on our kernels: implicit-GEMM convolutions and a fused RMS norm + SiLU.

:func:`use_kernels` rewires a decoder copy (the fast decoder of :mod:`core.speed.vae_decode`):

- every causal 3-D convolution (``WanCausalConv3d``) and every 2-D convolution of its upsamplers runs
  :func:`core.kernels.causal_conv3d.conv3d_channels_last`: the causal cache is still concatenated in front as
  diffusers does, but the zero padding (the spatial sides, and the time front before any cache) is the
  kernel's mask instead of an ``F.pad`` copy of the activation. Each weight is laid out for the kernel
  once. Convolutions it does not take (input channels not a multiple of 32: the first one, on the 16
  latent channels) keep their own forward;
- every RMS norm that a SiLU follows (the residual blocks' two, the decoder's last) runs
  :func:`core.kernels.rms_norm_silu.rms_norm_silu`, and that block's SiLU becomes the identity.

On the CPU both kernels fall back to diffusers' maths in torch.
"""

from __future__ import annotations

import functools

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    WanCausalConv3d,
    WanDecoder3d,
    WanResidualBlock,
    WanRMS_norm,
    WanUpsample,
)

from core.kernels.causal_conv3d import CHANNEL_MULTIPLE, conv3d_channels_last, prepare_weight
from core.kernels.rms_norm_silu import rms_norm_silu

_NORMS_BEFORE_SILU = {WanResidualBlock: ("norm1", "norm2"), WanDecoder3d: ("norm_out",)}
"""Per block type, the RMS norms its ``nonlinearity`` (SiLU) always follows, and nothing else."""
UPSAMPLE = 2
"""The upsamplers' nearest upsampling factor in height and width, folded into their convolution."""
KERNEL_WEIGHT = "_kernel_weight"
"""The buffer each routed convolution keeps its weight in the kernel's layout in (follows ``.to()``)."""


def use_kernels(decoder: torch.nn.Module, method: str) -> int:
    """Route ``decoder``'s convolutions through the kernel ``method`` (one of
    :data:`core.kernels.causal_conv3d.METHODS`) and its norms through the fused norm + SiLU, in place; returns
    how many modules were routed."""
    return _fuse_norms(decoder) + _route_convolutions(decoder, method)


def _fuse_norms(decoder: torch.nn.Module) -> int:
    """Fold each SiLU that follows an RMS norm into that norm."""
    fused = 0
    for block in decoder.modules():
        norms = _NORMS_BEFORE_SILU.get(type(block), ())
        if not norms or not isinstance(block.nonlinearity, torch.nn.SiLU):
            continue
        for name in norms:
            norm = getattr(block, name)
            norm.forward = functools.partial(_norm_silu_forward, norm)
            fused += 1
        block.nonlinearity = torch.nn.Identity()
    return fused


def _norm_silu_forward(norm: WanRMS_norm, x: torch.Tensor) -> torch.Tensor:
    return rms_norm_silu(x, norm.gamma, norm.bias, norm.scale)


def _route_convolutions(decoder: torch.nn.Module, method: str) -> int:
    routed = 0
    for module in decoder.modules():
        if hasattr(module, KERNEL_WEIGHT):
            continue  # an upsampler's convolution, taken with its upsampling below
        if _upsample_then_conv(module):  # pointer only: it reads the source pixels
            _keep_kernel_weight(module[1])
            module.forward = functools.partial(_frame_forward, module[1], "pointer", upsample=UPSAMPLE)
        elif isinstance(module, WanCausalConv3d) and _kernel_takes(module):
            _keep_kernel_weight(module)
            module.forward = functools.partial(_causal_forward, module, method)
        elif type(module) is torch.nn.Conv2d and _kernel_takes(module) and isinstance(module.padding, tuple):
            _keep_kernel_weight(module)
            module.forward = functools.partial(_frame_forward, module, method)
        else:
            continue
        routed += 1
    return routed


def _keep_kernel_weight(conv: torch.nn.Conv2d | torch.nn.Conv3d) -> None:
    """Lay ``conv``'s weight out for the kernel once (a 2-D one as one frame), as a buffer."""
    weight = conv.weight.detach()
    prepared = prepare_weight(weight.unsqueeze(2) if weight.dim() == 4 else weight)
    conv.register_buffer(KERNEL_WEIGHT, prepared, persistent=False)


def _upsample_then_conv(module: torch.nn.Module) -> bool:
    """An upsampler's ``Sequential(WanUpsample(x2, nearest-exact), Conv2d)`` the kernel takes whole."""
    if not isinstance(module, torch.nn.Sequential) or len(module) != 2:
        return False
    upsample, conv = module
    return (
        isinstance(upsample, WanUpsample)
        and upsample.mode in ("nearest", "nearest-exact")
        and upsample.scale_factor == (float(UPSAMPLE),) * 2
        and type(conv) is torch.nn.Conv2d
        and _kernel_takes(conv)
        and isinstance(conv.padding, tuple)
    )


def _kernel_takes(conv: torch.nn.Conv2d | torch.nn.Conv3d) -> bool:
    """A plain stride-1, zero-padded convolution whose input channels the kernel is built for."""
    plain = all(s == 1 for s in conv.stride) and all(d == 1 for d in conv.dilation) and conv.groups == 1
    plain = plain and conv.padding_mode == "zeros"
    return plain and conv.in_channels % CHANNEL_MULTIPLE == 0


def _causal_forward(
    module: WanCausalConv3d, method: str, x: torch.Tensor, cache_x: torch.Tensor | None = None
) -> torch.Tensor:
    """``WanCausalConv3d.forward`` with the padding masked in the kernel instead of copied."""
    pad_w, _, pad_h, _, pad_t, _ = module._padding
    if cache_x is not None and pad_t > 0:
        x = torch.cat([cache_x.to(x.device), x], dim=2)
        pad_t -= cache_x.shape[2]
    prepared = getattr(module, KERNEL_WEIGHT)
    return conv3d_channels_last(x, module.weight, module.bias, (pad_t, pad_h, pad_w), prepared, method)


def _frame_forward(module: torch.nn.Conv2d, method: str, x: torch.Tensor, upsample: int = 1) -> torch.Tensor:
    """A 2-D convolution over (frames, C, H, W) as a one-frame 3-D one, of ``x`` upsampled ``upsample``
    times by nearest neighbour first."""
    pad_h, pad_w = module.padding
    weight, prepared = module.weight.unsqueeze(2), getattr(module, KERNEL_WEIGHT)
    padding = (0, pad_h, pad_w)
    out = conv3d_channels_last(x.unsqueeze(2), weight, module.bias, padding, prepared, method, upsample)
    return out.squeeze(2)
