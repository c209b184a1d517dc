"""Triton block-sparse flash attention (forward only), used on CUDA when Triton imports.

Each program takes ``BLOCK_M`` query rows of one head and walks only the key blocks its query block may
see (a per-row list built from the block mask), with the online softmax of FlashAttention in float32.
A query block with no key block writes zeros. Same result as
:func:`core.kernels.block_sparse_attention.block_sparse_attention_torch` within bf16 rounding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .block_lists import active_key_blocks


@triton.jit
def _block_sparse_fwd(
    Q,
    K,
    V,
    Out,
    IDX,
    CNT,
    sm_scale,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_ob,
    stride_oh,
    stride_om,
    stride_ib,
    stride_ih,
    stride_iq,
    stride_cb,
    stride_ch,
    H,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    KEY_BLOCK: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    query_block = (pid_m * BLOCK_M) // KEY_BLOCK
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    count = tl.load(CNT + b * stride_cb + h * stride_ch + query_block)
    idx_row = IDX + b * stride_ib + h * stride_ih + query_block * stride_iq
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    for i in range(0, count):
        key_block = tl.load(idx_row + i)
        for j in tl.static_range(0, KEY_BLOCK // BLOCK_N):
            offs_n = key_block * KEY_BLOCK + j * BLOCK_N + tl.arange(0, BLOCK_N)
            k = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None])
            qk = tl.dot(q, k) * qk_scale
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.exp2(qk - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :])
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    acc = acc / l_safe[:, None]
    out_ptr = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    tl.store(out_ptr, acc.to(Out.dtype.element_ty))


def block_sparse_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    block_size: int = 128,
    block_m: int = 64,
    block_n: int = 64,
) -> torch.Tensor:
    """q (B, H, Lq, D), k and v (B, H, Lk, D) in fp16/bf16 on CUDA; D a power of two >= 16."""
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, heads, length, head_dim = q.shape
    order, counts = active_key_blocks(block_mask)
    out = torch.empty_like(q)
    block_m, block_n = min(block_m, block_size), min(block_n, block_size)
    grid = (length // block_m, batch * heads)
    _block_sparse_fwd[grid](
        q,
        k,
        v,
        out,
        order,
        counts,
        head_dim**-0.5,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        order.stride(0),
        order.stride(1),
        order.stride(2),
        counts.stride(0),
        counts.stride(1),
        heads,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        HEAD_DIM=head_dim,
        KEY_BLOCK=block_size,
        num_warps=4,
        num_stages=2,
    )
    return out
