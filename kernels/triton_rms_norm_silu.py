"""Triton channel RMS norm + SiLU over a channels-last activation (used by :mod:`core.kernels.rms_norm_silu`).

A channels-last (N, C, T, H, W) tensor is (positions, C) rows in memory; each program normalizes
``BLOCK_P`` rows of all ``C`` channels in float32 (``x / max(||x||, eps) * scale * gamma + bias``), applies
SiLU and writes the input's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE_ELEMENTS = 4096
"""Elements one program holds (rows x the channel count rounded up to a power of two)."""


@triton.jit
def _rms_norm_silu_kernel(
    X,
    Gamma,
    Bias,
    Y,
    rows,
    C,
    scale,
    eps,
    HAS_BIAS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    offs_p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C)
    col_ok = offs_c < C
    ok = (offs_p < rows)[:, None] & col_ok[None, :]
    offsets = offs_p[:, None] * C + offs_c[None, :]
    x = tl.load(X + offsets, mask=ok, other=0.0).to(tl.float32)
    norm = tl.maximum(tl.sqrt(tl.sum(x * x, axis=1)), eps)
    weight = tl.load(Gamma + offs_c, mask=col_ok, other=0.0).to(tl.float32) * scale
    y = x * (1.0 / norm)[:, None] * weight[None, :]
    if HAS_BIAS:
        y += tl.load(Bias + offs_c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    y = y * tl.sigmoid(y)
    tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=ok)


def rms_norm_silu_triton(
    x: torch.Tensor, gamma: torch.Tensor, bias: torch.Tensor | None, scale: float, eps: float
) -> torch.Tensor:
    """The fused norm + SiLU of channels-last ``x`` (N, C, T, H, W); ``gamma``, ``bias``: (C,)."""
    channels = x.shape[1]
    rows = x.numel() // channels
    out = torch.empty_like(x, memory_format=torch.channels_last_3d)
    block_c = triton.next_power_of_2(channels)
    block_p = max(1, TILE_ELEMENTS // block_c)
    grid = (triton.cdiv(rows, block_p),)
    with torch.cuda.device(x.device):
        _rms_norm_silu_kernel[grid](
            x,
            gamma,
            bias if bias is not None else gamma,
            out,
            rows,
            channels,
            float(scale),
            float(eps),
            HAS_BIAS=bias is not None,
            BLOCK_P=block_p,
            BLOCK_C=block_c,
        )
    return out
