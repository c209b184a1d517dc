"""Triton 8-bit attention forward (non-causal), used on CUDA SM89+ by :mod:`core.kernels.fp8_attention`.

Each program takes ``BLOCK_M`` query rows of one (batch, head) and walks all keys ``BLOCK_N`` at a time
with the online softmax of FlashAttention in float32 and base 2: scores are ``(q_int8 @ k_int8) * q_scale
* k_scale`` (``softmax_scale * log2 e`` is inside ``q_scale``). The int32 products become float32 by the
magic-number trick (add the bits of 1.5 * 2**23, reinterpret, subtract 1.5 * 2**23: exact below 2**22,
which 127**2 * 256 is): an integer and a float add at full rate instead of a conversion, which runs at
the rate of ``exp2`` and would double the softmax's cost. The probabilities are made in [0, 448]
directly (``exp2(s - m + log2 448)``) and cast to fp8 for ``P @ V^T``; that product starts from a zero
accumulator each tile and is added to the float32 one (Hopper's fp8 MMA accumulates with reduced
precision, so long chains of it are avoided). Full key tiles load without masks; only the last, partial
tile masks its keys. The epilogue divides by the row sum and multiplies by V's per-channel scale.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .fp8_attention import FP8_MAX, KEY_SCALE_BLOCK, SEQ_ALIGN, Fp8AttentionInputs

_LOG2_FP8_MAX = tl.constexpr(math.log2(FP8_MAX))
_MAGIC = tl.constexpr(12582912.0)
"""1.5 * 2**23: a float32 whose bit pattern plus an int32 ``x`` (|x| < 2**22) is the float ``_MAGIC + x``."""
_MAGIC_BITS = tl.constexpr(0x4B400000)
_KEY_SCALE_BLOCK = tl.constexpr(KEY_SCALE_BLOCK)

TILE_SHAPES = ((128, 128, 8), (128, 64, 8), (128, 64, 4), (64, 64, 4))
"""(BLOCK_M, BLOCK_N, num_warps) tried by the autotuner, each with 2, 3 and 4 pipeline stages. The tuning
is keyed on the sequence lengths and head size (not the head count: it barely moves the best tile)."""
HOPPER_CONFIG = (128, 128, 8, 4)
"""On SM90 the tuning picked 128x128 tiles, 8 warps, 4 stages at Wan 480p (1.3B and 14B heads,
H100, bench/attention_speed.py); only it and its 3-stage neighbour are tried there, so a new sequence
length costs a couple of seconds of tuning instead of ~20."""


def _configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=stages)
        for block_m, block_n, warps in TILE_SHAPES
        for stages in (2, 3, 4)
    ]


def _prune_for_gpu(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Hopper tries only the measured winner and its 3-stage neighbour; other GPUs tune the whole list."""
    if torch.cuda.get_device_capability()[0] != 9:
        return configs
    block_m, block_n, warps, stages = HOPPER_CONFIG
    kept = [
        c
        for c in configs
        if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps) == (block_m, block_n, warps)
        and c.num_stages in (stages, stages - 1)
    ]
    return kept or configs


@triton.jit
def _attend_tile(
    acc,
    l_i,
    m_i,
    q,
    q_scale,
    k_ptrs,
    v_ptrs,
    k_scale_ptr,
    start_n,
    kv_len,
    BLOCK_N: tl.constexpr,
    MASK: tl.constexpr,
):
    """One key tile of the online softmax; ``MASK`` only for the last, partial tile."""
    if MASK:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(k_ptrs, mask=offs_n[None, :] < kv_len, other=0)
    else:
        k = tl.load(k_ptrs)
    row_scale = q_scale * tl.load(k_scale_ptr)
    qk = tl.dot(q, k)
    if MASK:
        s = tl.where(offs_n[None, :] < kv_len, qk.to(tl.float32) * row_scale[:, None], float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - (m_new - _LOG2_FP8_MAX)[:, None])
    else:
        m_new = tl.maximum(m_i, tl.max(qk, 1).to(tl.float32) * row_scale)
        exact = (qk + _MAGIC_BITS).to(tl.float32, bitcast=True) - _MAGIC
        p = tl.math.exp2(exact * row_scale[:, None] - (m_new - _LOG2_FP8_MAX)[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(v_ptrs)
    acc = acc * alpha[:, None] + tl.dot(p.to(tl.float8e4nv), v)
    return acc, l_i, m_new


@triton.autotune(
    configs=_configs(),
    key=["q_len", "kv_len", "HEAD_DIM"],
    prune_configs_by={"early_config_prune": _prune_for_gpu},
)
@triton.jit
def _fp8_attention_fwd(
    Q,
    K,
    VT,
    QS,
    KS,
    VS,
    Out,
    q_len,
    kv_len,
    heads,
    stride_qb,
    stride_qs,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vh,
    stride_vd,
    stride_qsb,
    stride_qss,
    stride_qsh,
    stride_ksb,
    stride_ksn,
    stride_ksh,
    stride_vsb,
    stride_vsh,
    stride_ob,
    stride_os,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    tl.static_assert(_KEY_SCALE_BLOCK % BLOCK_N == 0)
    tl.static_assert(HEAD_DIM <= 256)  # int8 dot products stay below 2**22 (see _MAGIC)
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // heads).to(tl.int64)
    h = pid_bh % heads
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < q_len

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0)
    q_scale = tl.load(QS + b * stride_qsb + h * stride_qsh + offs_m * stride_qss, mask=row_ok, other=0.0)
    k_ptrs = K + b * stride_kb + h * stride_kh + offs_n[None, :] * stride_ks + offs_d[:, None]
    v_ptrs = VT + b * stride_vb + h * stride_vh + offs_d[None, :] * stride_vd + offs_n[:, None]
    k_scale_ptr = KS + b * stride_ksb + h * stride_ksh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_end = (kv_len // BLOCK_N) * BLOCK_N
    for start_n in range(0, full_end, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        scale_ptr = k_scale_ptr + (start_n // _KEY_SCALE_BLOCK) * stride_ksn
        acc, l_i, m_i = _attend_tile(
            acc, l_i, m_i, q, q_scale, k_ptrs, v_ptrs, scale_ptr, start_n, kv_len, BLOCK_N, False
        )
        k_ptrs += BLOCK_N * stride_ks
        v_ptrs += BLOCK_N
    if full_end < kv_len:
        scale_ptr = k_scale_ptr + (full_end // _KEY_SCALE_BLOCK) * stride_ksn
        acc, l_i, m_i = _attend_tile(
            acc, l_i, m_i, q, q_scale, k_ptrs, v_ptrs, scale_ptr, full_end, kv_len, BLOCK_N, True
        )

    v_scale = tl.load(VS + b * stride_vsb + h * stride_vsh + offs_d)
    out = acc / l_i[:, None] * v_scale[None, :]
    out_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :]
    tl.store(out_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])


def fp8_attention_triton(inputs: Fp8AttentionInputs, out_dtype: torch.dtype) -> torch.Tensor:
    """Run the kernel on quantized inputs (see :class:`Fp8AttentionInputs`); returns (B, Sq, H, D)."""
    q, k, v_t, q_scale, k_scale, v_scale = (t if t.stride(-1) == 1 else t.contiguous() for t in inputs)
    batch, q_len, heads, head_dim = q.shape
    kv_len = k.shape[1]
    if v_t.shape[-1] < -(-kv_len // SEQ_ALIGN) * SEQ_ALIGN:
        raise ValueError(f"V^T must be padded to whole {SEQ_ALIGN}-key tiles; got {tuple(v_t.shape)}")
    if k_scale.shape[1] < -(-kv_len // KEY_SCALE_BLOCK):
        raise ValueError(f"expected one K scale per {KEY_SCALE_BLOCK} keys; got {tuple(k_scale.shape)}")
    out = torch.empty((batch, q_len, heads, head_dim), dtype=out_dtype, device=q.device)

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(q_len, meta["BLOCK_M"]), batch * heads

    with torch.cuda.device(q.device):  # launch (and the tuning's capability check) on q's GPU
        _fp8_attention_fwd[grid](
            q,
            k,
            v_t,
            q_scale,
            k_scale,
            v_scale,
            out,
            q_len,
            kv_len,
            heads,
            q.stride(0),
            q.stride(1),
            q.stride(2),
            k.stride(0),
            k.stride(1),
            k.stride(2),
            v_t.stride(0),
            v_t.stride(1),
            v_t.stride(2),
            q_scale.stride(0),
            q_scale.stride(1),
            q_scale.stride(2),
            k_scale.stride(0),
            k_scale.stride(1),
            k_scale.stride(2),
            v_scale.stride(0),
            v_scale.stride(1),
            out.stride(0),
            out.stride(1),
            out.stride(2),
            HEAD_DIM=head_dim,
        )
    return out
