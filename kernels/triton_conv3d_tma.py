"""Triton implicit-GEMM 3-D convolution whose tiles move by TMA (Hopper and newer).

The same product as :mod:`core.kernels.triton_conv3d` (``out[M, C_out] = patches[M, K] @ weight[K, C_out]``),
but each output tile is ``BLOCK_W`` consecutive columns of one row of one frame, and each ``K`` step is one
tensor-memory-accelerator copy of the input box ``(1, 1, 1, BLOCK_W, BLOCK_K)`` at the tap's shifted
coordinates: the copy engine fills what lies outside the tensor (the zero padding, before the first frame)
with zeros, so the kernel computes no addresses or masks. The weight tiles and the output tile move by TMA
too. TMA needs every stride but the channels' to be a multiple of 16 bytes: ``C_in`` and ``C_out``
multiples of 8 (bfloat16). The descriptors are made on the host and take each config's box shape in a
``pre_hook``; Triton keeps no disk cache of tunings whose configs have hooks, so each process tunes again
on its first decode of a size, and ``torch.compile`` breaks its graph at this kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from .triton_conv3d import TUNING_KEY, fitting_tiles, k_step, output_buffer

TILES = (
    (128, 128, 32, 8, 4),
    (128, 128, 64, 8, 3),
    (128, 128, 32, 4, 4),
    (256, 128, 32, 8, 3),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (128, 256, 32, 8, 3),
    (256, 64, 32, 8, 4),
)
"""(BLOCK_W, BLOCK_N, BLOCK_K, num_warps, num_stages) the autotuner tries."""


def _set_blocks(nargs: dict) -> None:
    """Give the descriptors the chosen config's box shapes (they are made before the tuning picks one)."""
    block_w, block_n, block_k = nargs["BLOCK_W"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["x_desc"].block_shape = [1, 1, 1, block_w, block_k]
    nargs["w_desc"].block_shape = [block_k, block_n]
    nargs["y_desc"].block_shape = [1, 1, 1, block_w, block_n]


def _configs() -> list[triton.Config]:
    return [
        triton.Config(
            {"BLOCK_W": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s, pre_hook=_set_blocks
        )
        for m, n, k, w, s in TILES
    ]


@triton.autotune(
    configs=_configs(),
    key=TUNING_KEY,
    prune_configs_by={"early_config_prune": fitting_tiles},
    cache_results=True,
)
@triton.jit
def _conv3d_tma_kernel(
    x_desc,
    w_desc,
    y_desc,
    Bias,
    M,
    C_in,
    C_out,
    T_out,
    H_out,
    W_out,
    PT: tl.constexpr,
    PH: tl.constexpr,
    PW: tl.constexpr,
    KT: tl.constexpr,
    KH: tl.constexpr,
    KW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    blocks_n = tl.cdiv(C_out, BLOCK_N)
    blocks_w = tl.cdiv(W_out, BLOCK_W)
    pid_n = pid % blocks_n
    rest = pid // blocks_n
    w0 = (rest % blocks_w) * BLOCK_W
    rest = rest // blocks_w
    h = rest % H_out
    rest = rest // H_out
    t = rest % T_out
    n = rest // T_out
    n0 = pid_n * BLOCK_N

    acc = tl.zeros((BLOCK_W, BLOCK_N), dtype=tl.float32)
    steps_per_tap = C_in // BLOCK_K
    for step in range(0, KT * KH * KW * steps_per_tap):
        tap, c0, kt, kh, kw = k_step(step, steps_per_tap, KH, KW, BLOCK_K)
        a = x_desc.load([n, t + kt - PT, h + kh - PH, w0 + kw - PW, c0]).reshape(BLOCK_W, BLOCK_K)
        b = w_desc.load([tap * C_in + c0, n0])
        acc = tl.dot(a, b, acc)

    if HAS_BIAS:
        offs_n = n0 + tl.arange(0, BLOCK_N)
        acc += tl.load(Bias + offs_n, mask=offs_n < C_out, other=0.0).to(tl.float32)[None, :]
    y_desc.store([n, t, h, w0, n0], acc.to(y_desc.dtype).reshape(1, 1, 1, BLOCK_W, BLOCK_N))


def conv3d_tma(
    x: torch.Tensor, prepared: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int, int]
) -> torch.Tensor:
    """As :func:`core.kernels.triton_conv3d.conv3d_triton`, by TMA (SM90+, channel counts multiples of 8)."""
    kt, kh, kw, c_in, c_out = prepared.shape
    _, _, t_in, h_in, w_in = x.shape
    out = output_buffer(x, prepared, padding)
    batch, t_out, h_out, w_out, _ = out.shape
    x_strides = [x.stride(0), x.stride(2), x.stride(3), x.stride(4), 1]
    x_desc = TensorDescriptor(x, [batch, t_in, h_in, w_in, c_in], x_strides, [1, 1, 1, 8, 8])
    w_desc = TensorDescriptor.from_tensor(prepared.view(-1, c_out), [8, 8])
    y_desc = TensorDescriptor.from_tensor(out, [1, 1, 1, 8, 8])

    def grid(meta: dict) -> tuple[int]:
        tiles = triton.cdiv(w_out, meta["BLOCK_W"]) * triton.cdiv(c_out, meta["BLOCK_N"])
        return (batch * t_out * h_out * tiles,)

    with torch.cuda.device(x.device):
        _conv3d_tma_kernel[grid](
            x_desc,
            w_desc,
            y_desc,
            bias if bias is not None else prepared,
            batch * t_out * h_out * w_out,
            c_in,
            c_out,
            t_out,
            h_out,
            w_out,
            PT=padding[0],
            PH=padding[1],
            PW=padding[2],
            KT=kt,
            KH=kh,
            KW=kw,
            HAS_BIAS=bias is not None,
        )
    return out.permute(0, 4, 1, 2, 3)
