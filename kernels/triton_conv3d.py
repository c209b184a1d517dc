"""Triton implicit-GEMM 3-D convolution (stride 1, zero padding) on channels-last bfloat16 tensors.

Used on CUDA by :func:`core.kernels.causal_conv3d.conv3d_channels_last`. The convolution is one matrix product
``out[M, C_out] = patches[M, K] @ weight[K, C_out]`` with ``M`` the output positions (batch, frames, rows,
columns) and ``K`` the taps times the input channels; the patches are never built: each step of the single
``K`` loop loads a ``BLOCK_M x BLOCK_K`` tile of one tap's input channels straight from the channels-last
input, shifted by that tap's offset, with the padding as a mask (zeros). ``C_in`` must be a multiple of
``BLOCK_K`` so a step never crosses taps. The weight is prepared once as ``(KT, KH, KW, C_in, C_out)``
(:func:`core.kernels.causal_conv3d.prepare_weight`). Accumulation is float32; the bias is added in the
epilogue.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .conv3d_tiles import TILES, Tile, measured_tile


def _configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_warps=w, num_stages=s)
        for m, n, k, w, s in TILES
    ]


def fitting_tiles(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Tiles whose ``BLOCK_K`` divides the input channels (a ``K`` step stays inside one tap) and whose
    ``BLOCK_N`` is not wider than the output channels need (the narrowest there is otherwise); a K step
    that crosses taps would be wrong, so no fitting one is an error."""
    steps = [c for c in configs if named_args["C_in"] % c.kwargs["BLOCK_K"] == 0]
    if not steps:
        raise ValueError(f"no tile's K step divides {named_args['C_in']} input channels")
    widest = max(16, triton.next_power_of_2(named_args["C_out"]))
    narrowest = min(c.kwargs["BLOCK_N"] for c in steps)
    return [c for c in steps if c.kwargs["BLOCK_N"] <= max(widest, narrowest)]


USE_MEASURED_TILES = True
"""Whether a GPU and shape in :mod:`core.kernels.conv3d_tiles` tries only its measured tile
(``bench/wan_vae_speed.py --full-tuning`` turns this off to time every tile again)."""


@functools.cache
def _gpu_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def pointer_tiles(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """:func:`fitting_tiles`, narrowed to the one tile measured best on this GPU for this convolution
    (:func:`core.kernels.conv3d_tiles.measured_tile`) where there is one: a first decode then compiles
    and times one tile per shape instead of all of them."""
    fitting = fitting_tiles(configs, named_args, **kwargs)
    if not USE_MEASURED_TILES:
        return fitting
    args = {**named_args, **kwargs}
    taps = (args["KT"], args["KH"], args["KW"])
    tile = measured_tile(_gpu_name(args["X"].device.index or 0), args["C_in"], args["C_out"], taps, args["M"])
    chosen = [config for config in fitting if tile_of(config) == tile]
    return chosen or fitting


def tile_of(config: triton.Config) -> Tile:
    """A config as a :data:`TILES` row."""
    kw = config.kwargs
    return (kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], config.num_warps, config.num_stages)


TUNING_KEY = ["M", "C_in", "C_out", "H_out", "W_out", "KT", "KH", "KW"]
"""What a tuning is kept for: the problem's size and shape (not the padding, which barely moves the best
tile)."""


@triton.jit
def k_step(step, steps_per_tap, KH: tl.constexpr, KW: tl.constexpr, BLOCK_K: tl.constexpr):
    """Step ``step`` of the K loop: its tap (flat, and as time, row and column offsets) and first input
    channel; taps in (KT, KH, KW) order, ``steps_per_tap`` channel blocks each."""
    tap = step // steps_per_tap
    c0 = (step % steps_per_tap) * BLOCK_K
    return tap, c0, tap // (KW * KH), (tap // KW) % KH, tap % KW


@triton.autotune(
    configs=_configs(),
    key=TUNING_KEY,
    prune_configs_by={"early_config_prune": pointer_tiles},
    cache_results=True,
)
@triton.jit
def _conv3d_kernel(
    X,
    Wt,
    Bias,
    Y,
    M,
    C_in,
    C_out,
    T_out,
    H_out,
    W_out,
    T_in,
    H_in,
    W_in,
    stride_xn,
    stride_xt,
    stride_xh,
    stride_xw,
    PT: tl.constexpr,
    PH: tl.constexpr,
    PW: tl.constexpr,
    KT: tl.constexpr,
    KH: tl.constexpr,
    KW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    UP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    blocks_m = tl.cdiv(M, BLOCK_M)
    blocks_n = tl.cdiv(C_out, BLOCK_N)
    in_group = GROUP_M * blocks_n
    first_m = (pid // in_group) * GROUP_M
    group_size = tl.minimum(blocks_m - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_size
    pid_n = (pid % in_group) // group_size

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    row_ok = offs_m < M
    col_ok = offs_n < C_out
    w_o = offs_m % W_out
    rest = offs_m // W_out
    h_o = rest % H_out
    rest = rest // H_out
    t_o = rest % T_out
    n = rest // T_out
    base = (
        n.to(tl.int64) * stride_xn
        + (t_o - PT).to(tl.int64) * stride_xt
        + (h_o - PH).to(tl.int64) * stride_xh
        + (w_o - PW).to(tl.int64) * stride_xw
    )

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    steps_per_tap = C_in // BLOCK_K
    for step in range(0, KT * KH * KW * steps_per_tap):
        tap, c0, kt, kh, kw = k_step(step, steps_per_tap, KH, KW, BLOCK_K)
        t_i = t_o + kt - PT
        h_i = h_o + kh - PH
        w_i = w_o + kw - PW
        ok = row_ok & (t_i >= 0) & (t_i < T_in)
        ok = ok & (h_i >= 0) & (h_i < H_in * UP) & (w_i >= 0) & (w_i < W_in * UP)
        if UP == 1:
            rows = base + (kt * stride_xt + kh * stride_xh + kw * stride_xw)
        else:  # nearest upsampling: upsampled row h reads input row h // UP
            rows = n.to(tl.int64) * stride_xn + t_i.to(tl.int64) * stride_xt
            rows += (h_i // UP).to(tl.int64) * stride_xh + (w_i // UP).to(tl.int64) * stride_xw
        a = tl.load(X + rows[:, None] + (c0 + offs_k)[None, :], mask=ok[:, None], other=0.0)
        w_rows = tap * C_in + c0 + offs_k
        b = tl.load(Wt + w_rows[:, None] * C_out + offs_n[None, :], mask=col_ok[None, :], other=0.0)
        acc = tl.dot(a, b, acc)

    if HAS_BIAS:
        acc += tl.load(Bias + offs_n, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    y_ptrs = Y + offs_m.to(tl.int64)[:, None] * C_out + offs_n[None, :]
    tl.store(y_ptrs, acc.to(Y.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def output_buffer(
    x: torch.Tensor, prepared: torch.Tensor, padding: tuple[int, int, int], upsample: int = 1
) -> torch.Tensor:
    """The empty (N, T_out, H_out, W_out, C_out) output of convolving channels-last ``x`` by ``prepared``
    (see :func:`conv3d_triton` for ``padding`` and ``upsample``)."""
    kt, kh, kw, c_in, c_out = prepared.shape
    batch, channels, t_in, h_in, w_in = x.shape
    if channels != c_in or x.stride(1) != 1:
        raise ValueError(
            f"expected channels-last input of {c_in} channels; got {tuple(x.shape)} {x.stride()}"
        )
    pt, ph, pw = padding
    t_out = t_in + pt - kt + 1
    h_out, w_out = h_in * upsample + 2 * ph - kh + 1, w_in * upsample + 2 * pw - kw + 1
    return torch.empty((batch, t_out, h_out, w_out, c_out), dtype=x.dtype, device=x.device)


def conv3d_triton(
    x: torch.Tensor,
    prepared: torch.Tensor,
    bias: torch.Tensor | None,
    padding: tuple[int, int, int],
    upsample: int = 1,
) -> torch.Tensor:
    """Stride-1 convolution of channels-last ``x`` (N, C_in, T, H, W) by a weight laid out by
    :func:`core.kernels.causal_conv3d.prepare_weight`, zero padding ``padding`` = (front frames, rows per
    side, columns per side; the time axis is padded at the front only: causal), of ``x`` first upsampled
    ``upsample`` times in height and width by nearest neighbour (never made: the loads read the source
    pixel). Returns (N, C_out, T_out, H_out, W_out) channels-last, ``x``'s dtype."""
    kt, kh, kw, c_in, c_out = prepared.shape
    _, _, t_in, h_in, w_in = x.shape
    out = output_buffer(x, prepared, padding, upsample)
    batch, t_out, h_out, w_out, _ = out.shape
    m = batch * t_out * h_out * w_out

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(c_out, meta["BLOCK_N"]),)

    with torch.cuda.device(x.device):
        _conv3d_kernel[grid](
            x,
            prepared,
            bias if bias is not None else prepared,
            out,
            m,
            c_in,
            c_out,
            t_out,
            h_out,
            w_out,
            t_in,
            h_in,
            w_in,
            x.stride(0),
            x.stride(2),
            x.stride(3),
            x.stride(4),
            PT=padding[0],
            PH=padding[1],
            PW=padding[2],
            KT=kt,
            KH=kh,
            KW=kw,
            HAS_BIAS=bias is not None,
            UP=upsample,
        )
    return out.permute(0, 4, 1, 2, 3)
