"""8-bit attention for long non-causal self-attention on Ada/Hopper: INT8 ``Q @ K^T``, FP8 ``P @ V``.

This is SageAttention 2's recipe, done by :func:`quantize_for_fp8_attention` in plain torch ops (that
``torch.compile`` fuses):

- Q: int8, one scale per token and head (amax over ``head_dim``); ``softmax_scale * log2(e)`` is folded
  into it so the kernel works in base 2 (``exp2``).
- K: first *smoothed* (the mean over tokens per batch/head/channel is subtracted: softmax is invariant to
  it, and the outlier channels real models have vanish), then int8 with one scale per block of
  :data:`KEY_SCALE_BLOCK` keys and head.
- V: fp8 e4m3, one scale per channel (``head_dim`` column) per batch/head, stored transposed as
  (B, H, D, S_pad) so both operands of the fp8 ``P @ V`` product are K-major (what Hopper's MMA wants).
- P (the exp2 probabilities in [0, 1]) is cast to fp8 in registers scaled by 448; accumulation is float32.

Int8 rather than fp8 e4m3 for Q and K: the same tensor-core rate, and measured on random data with
per-channel offsets the QK error is 15-20x smaller (e4m3 keeps 3 mantissa bits; cosine 0.995 vs 0.9997).

:func:`fp8_attention` runs the Triton kernel (:mod:`core.kernels.triton_fp8_attention`) on CUDA SM89+ and,
elsewhere, the same maths from the dequantized tensors in float32 (:func:`fp8_attention_reference`), so CPU
tests check the quantization and GPU tests compare the kernel with it tightly.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
INT8_MAX = 127.0
HEAD_DIMS = (64, 128)
"""Head sizes the kernel is built and tuned for (Wan's is 128)."""
KEY_SCALE_BLOCK = 128
"""Keys sharing one K scale; the kernel's key tile (64 or 128) divides it."""
SEQ_ALIGN = 128
"""V^T's token axis is zero-padded to a multiple of this, so the kernel loads whole tiles of it."""
MIN_CAPABILITY = (8, 9)
"""fp8 tensor-core MMA needs Ada (SM89), Hopper or newer."""
LOG2E = 1.4426950408889634
_TINY = 1e-12


class Fp8AttentionInputs(NamedTuple):
    """Quantized attention inputs; (B, S, H, D) is the layout diffusers' attention backends receive."""

    q: torch.Tensor
    """(B, S, H, D) int8: ``query / q_scale`` rounded (softmax_scale * log2 e is folded into the scale)."""
    k: torch.Tensor
    """(B, S, H, D) int8: ``(key - mean over S) / k_scale`` rounded."""
    v_t: torch.Tensor
    """(B, H, D, S_pad) fp8: ``value / v_scale`` transposed, zero beyond S."""
    q_scale: torch.Tensor
    """(B, S, H) float32, including ``softmax_scale * log2(e)``."""
    k_scale: torch.Tensor
    """(B, ceil(S / KEY_SCALE_BLOCK), H) float32."""
    v_scale: torch.Tensor
    """(B, H, D) float32."""


@functools.lru_cache(maxsize=8)
def _unavailable_on(device_index: int) -> str | None:
    capability = torch.cuda.get_device_capability(device_index)
    if capability < MIN_CAPABILITY:
        return f"8-bit attention needs SM89 or newer (this GPU is sm_{capability[0]}{capability[1]})"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    return None


def fp8_attention_unavailable(device: torch.device) -> str | None:
    """Why the fp8 Triton kernel cannot run on ``device``, or ``None`` when it can."""
    if device.type != "cuda":
        return f"8-bit attention needs a CUDA GPU (running on {device.type})"
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _unavailable_on(index)


def _to_fp8(x: torch.Tensor, inverse_scale: torch.Tensor) -> torch.Tensor:
    return (x * inverse_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)


def _to_int8(x: torch.Tensor, inverse_scale: torch.Tensor) -> torch.Tensor:
    return (x * inverse_scale).round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8)


def quantize_for_fp8_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None
) -> Fp8AttentionInputs:
    """Quantize (B, S, H, D) ``query``, ``key``, ``value`` as the module docstring says (torch ops only)."""
    if query.ndim != 4 or key.shape != value.shape or query.shape[0] != key.shape[0]:
        raise ValueError(f"expected (B, S, H, D) tensors; got {query.shape}, {key.shape}, {value.shape}")
    if query.shape[2:] != key.shape[2:]:
        raise ValueError(f"query and key differ in heads or head_dim: {query.shape}, {key.shape}")
    batch, keys, heads, head_dim = key.shape
    softmax_scale = head_dim**-0.5 if scale is None else scale

    q_amax = query.abs().amax(dim=-1).float().clamp_min(_TINY)
    q = _to_int8(query, (INT8_MAX / q_amax).unsqueeze(-1))
    q_scale = q_amax * (softmax_scale * LOG2E / INT8_MAX)

    smooth = key - key.mean(dim=1, keepdim=True, dtype=torch.float32)
    blocks = -(-keys // KEY_SCALE_BLOCK)
    token_amax = smooth.abs().amax(dim=-1)
    token_amax = F.pad(token_amax, (0, 0, 0, blocks * KEY_SCALE_BLOCK - keys))
    k_amax = token_amax.reshape(batch, blocks, KEY_SCALE_BLOCK, heads).amax(dim=2).clamp_min(_TINY)
    k_inverse = (INT8_MAX / k_amax).repeat_interleave(KEY_SCALE_BLOCK, dim=1)[:, :keys]
    k = _to_int8(smooth, k_inverse.unsqueeze(-1))

    v_amax = value.abs().amax(dim=1).float().clamp_min(_TINY)
    v = _to_fp8(value, (FP8_MAX / v_amax).unsqueeze(1))
    padded = -(-keys // SEQ_ALIGN) * SEQ_ALIGN
    v_t = F.pad(v.view(torch.uint8).permute(0, 2, 3, 1), (0, padded - keys)).view(FP8)
    return Fp8AttentionInputs(q, k, v_t, q_scale, k_amax / INT8_MAX, v_amax / FP8_MAX)


def dequantized_attention(
    inputs: Fp8AttentionInputs, out_dtype: torch.dtype, rows: int = 1024
) -> torch.Tensor:
    """The kernel's maths in float32 from the quantized inputs, ``rows`` queries at a time; (B, S, H, D).

    P is rounded to fp8 (scaled by 448) the way the kernel does, against the row's global maximum.
    """
    keys = inputs.k.shape[1]
    k_scale = inputs.k_scale.repeat_interleave(KEY_SCALE_BLOCK, dim=1)[:, :keys]
    k = (inputs.k.float() * k_scale.unsqueeze(-1)).transpose(1, 2)
    v = inputs.v_t[..., :keys].float().transpose(-1, -2)
    q = (inputs.q.float() * inputs.q_scale.unsqueeze(-1)).transpose(1, 2)
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    for start in range(0, q.shape[2], rows):
        scores = q[:, :, start : start + rows] @ k.transpose(-1, -2)
        p = torch.exp2(scores - scores.amax(dim=-1, keepdim=True)) * FP8_MAX
        out[:, :, start : start + rows] = (p.to(FP8).float() @ v) / p.sum(dim=-1, keepdim=True)
    out = out * inputs.v_scale.unsqueeze(2)
    return out.transpose(1, 2).to(out_dtype).contiguous()


def fp8_attention_reference(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Same quantization as the kernel, attention from the dequantized tensors in float32 (any device)."""
    inputs = quantize_for_fp8_attention(query, key, value, scale)
    return dequantized_attention(inputs, query.dtype)


@torch.library.custom_op("video_studio::fp8_attention_quantized", mutates_args=())
def fp8_attention_quantized(
    q: torch.Tensor,
    k: torch.Tensor,
    v_t: torch.Tensor,
    q_scale: torch.Tensor,
    k_scale: torch.Tensor,
    v_scale: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Attention of quantized inputs (see :class:`Fp8AttentionInputs`); (B, S, H, D) in ``out_dtype``.

    The Triton kernel where :func:`fp8_attention_unavailable` allows, else :func:`dequantized_attention`.
    """
    inputs = Fp8AttentionInputs(q, k, v_t, q_scale, k_scale, v_scale)
    if fp8_attention_unavailable(q.device) is None:
        from .triton_fp8_attention import fp8_attention_triton

        return fp8_attention_triton(inputs, out_dtype)
    return dequantized_attention(inputs, out_dtype)


@fp8_attention_quantized.register_fake
def _fp8_attention_quantized_fake(q, k, v_t, q_scale, k_scale, v_scale, out_dtype):
    return torch.empty(q.shape, dtype=out_dtype, device=q.device)


def fp8_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Non-causal attention of (B, S, H, D) tensors with 8-bit Q, K, P and V; returns (B, S, H, D).

    Lossy (cosine ~0.999 against exact attention). Worth it only for long key sequences (video
    self-attention); short ones (text cross-attention) should stay on a lossless backend.
    ``scale`` defaults to ``head_dim ** -0.5``. The quantization is traced by ``torch.compile``; the kernel
    is one custom op, so ``fullgraph=True`` works.
    """
    inputs = quantize_for_fp8_attention(query, key, value, scale)
    return fp8_attention_quantized(*inputs, query.dtype)
