"""Stride-1 3-D convolution with causal time padding, on channels-last tensors: the Wan VAE's convolution.

:func:`conv3d_channels_last` runs the Triton implicit-GEMM kernel (:mod:`core.kernels.triton_conv3d`) on CUDA
for bfloat16/float16 inputs whose channel counts it is built for, and otherwise the same maths in torch
(``F.pad`` + ``F.conv3d``, as diffusers' ``WanCausalConv3d`` does), so CPU tests check the wiring and GPU
tests compare the kernel with cuDNN.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

CHANNEL_MULTIPLE = 32
"""Input channel counts the kernel takes: a multiple of its smallest ``K`` tile."""
KERNEL_DTYPES = (torch.bfloat16, torch.float16)
TMA_MIN_CAPABILITY = (9, 0)
"""The TMA kernel (:mod:`core.kernels.triton_conv3d_tma`) needs Hopper or newer."""
METHODS = ("pointer", "tma")
"""The kernels: ``pointer`` (:mod:`core.kernels.triton_conv3d`, any CUDA GPU Triton runs on) and ``tma``
(:mod:`core.kernels.triton_conv3d_tma`, SM90+; ``pointer`` where its needs are not met)."""


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports (it ships with torch's CUDA wheels)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def runs_kernel(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`conv3d_channels_last` runs the Triton kernel for this input and weight."""
    return (
        x.is_cuda
        and x.dtype in KERNEL_DTYPES
        and weight.shape[1] % CHANNEL_MULTIPLE == 0
        and triton_available()
    )


def prepare_weight(weight: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, KT, KH, KW) convolution weight as the kernel reads it: (KT, KH, KW, C_in, C_out)."""
    return weight.permute(2, 3, 4, 1, 0).contiguous()


def conv3d_channels_last(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: tuple[int, int, int] = (0, 0, 0),
    prepared: torch.Tensor | None = None,
    method: str = "pointer",
    upsample: int = 1,
) -> torch.Tensor:
    """Stride-1 convolution of ``x`` (N, C_in, T, H, W) by ``weight`` (C_out, C_in, KT, KH, KW), zero
    padding ``padding`` = (frames at the front, rows per side, columns per side); channels-last output.
    ``prepared`` is ``weight`` already in the kernel's layout (:func:`prepare_weight`),
    made once by the caller that convolves with the same weight many times; ``method`` one of
    :data:`METHODS`. ``upsample`` > 1 first upsamples ``x``'s height and width by nearest neighbour, as
    diffusers' ``WanUpsample`` does (``pointer`` only: the kernel reads the source pixels)."""
    if not runs_kernel(x, weight):
        if upsample > 1:
            x = F.interpolate(x, scale_factor=(1, upsample, upsample), mode="nearest-exact")
        pt, ph, pw = padding
        return F.conv3d(F.pad(x, (pw, pw, ph, ph, pt, 0)), weight, bias)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    prepared = prepared if prepared is not None else prepare_weight(weight)
    if method == "tma" and upsample == 1 and _tma_takes(x, weight):
        from .triton_conv3d_tma import conv3d_tma

        return conv3d_tma(x, prepared, bias, padding)
    from .triton_conv3d import conv3d_triton

    return conv3d_triton(x, prepared, bias, padding, upsample)


def _tma_takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """TMA's needs: SM90+, 16-byte aligned base and strides (channel counts multiples of 8)."""
    return (
        torch.cuda.get_device_capability(x.device) >= TMA_MIN_CAPABILITY
        and weight.shape[0] % 8 == 0
        and weight.shape[1] % 8 == 0
        and x.data_ptr() % 16 == 0
    )
