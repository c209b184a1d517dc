"""The Wan VAE's channel RMS norm followed by SiLU, in one pass over a channels-last activation.

diffusers' ``WanRMS_norm`` normalizes in float32 (``F.normalize`` over the channels, cast back), then
multiplies by ``sqrt(C)`` and ``gamma``, adds ``bias`` and the block applies SiLU: about ten passes over
the activation, several in float32. :func:`rms_norm_silu` reads it once and writes it once on CUDA (the
Triton kernel in :mod:`core.kernels.triton_rms_norm_silu`, all in float32, rounded once) and does diffusers'
maths in torch elsewhere, so CPU tests check the wiring and GPU tests compare the kernel with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .causal_conv3d import KERNEL_DTYPES, triton_available

EPS = 1e-12
"""``F.normalize``'s floor on the norm."""


def runs_kernel(x: torch.Tensor) -> bool:
    """Whether :func:`rms_norm_silu` runs the Triton kernel for ``x``: channels-last on a CUDA GPU."""
    channels_last = x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)
    return x.is_cuda and x.dtype in KERNEL_DTYPES and channels_last and triton_available()


def rms_norm_silu(
    x: torch.Tensor, gamma: torch.Tensor, bias: torch.Tensor | float, scale: float
) -> torch.Tensor:
    """``silu(F.normalize(x, dim=1) * scale * gamma + bias)`` of (N, C, T, H, W) ``x``; ``gamma`` and a
    tensor ``bias`` hold one value per channel."""
    if not runs_kernel(x):
        normalized = F.normalize(x.float() if x.dtype in KERNEL_DTYPES else x, dim=1).to(x.dtype)
        return F.silu(normalized * scale * gamma + bias)
    from .triton_rms_norm_silu import rms_norm_silu_triton

    bias_tensor = bias.reshape(-1) if isinstance(bias, torch.Tensor) else None
    return rms_norm_silu_triton(x, gamma.reshape(-1), bias_tensor, scale, EPS)
