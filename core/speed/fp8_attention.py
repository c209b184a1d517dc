"""Turbo's 8-bit attention as a diffusers attention backend: our Triton kernel or SageAttention's CUDA ones.

diffusers 0.42.1 ships the backend ``sage_hub``: its function calls SageAttention's ``sageattn``, fetched
from the Hub through the ``kernels`` package, as ``kernel_fn(q=, k=, v=, tensor_layout="NHD",
is_causal=, sm_scale=, return_lse=)`` on (batch, seq, heads, head_dim) tensors. We fill that slot with one
of two local kernels, each traceable by ``torch.compile(fullgraph=True)``:

- ``fp8``: :func:`core.kernels.fp8_attention.fp8_attention` (its quantization is torch ops and its kernel one
  custom op with a fake implementation);
- ``sage``: the installed ``sageattention`` package's ``sageattn`` (SageAttention 2's CUDA kernels, built
  from source by the installer where nvcc is present), wrapped whole as the custom op
  :func:`sage_attention`: its quantization kernels are plain extension calls dynamo cannot trace.

Routing by key length: only attention over at least ``min_keys`` keys (the video self-attention, tens of
thousands of tokens) runs 8-bit. Shorter key sequences (Wan's text cross-attention: 512 keys, its image
context: 257) gain nothing from it and stay on PyTorch SDPA, lossless; so do causal calls and head sizes
the kernel is not built for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from core.kernels.fp8_attention import HEAD_DIMS

BACKEND = "sage_hub"
"""The diffusers ``AttentionBackendName`` value whose kernel slot we fill."""
MIN_KEYS = 2048
"""Fewer keys than this run on SDPA (see the module docstring)."""

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float | None], torch.Tensor]
_kernel: Kernel | None = None
_kernel_name: str | None = None
_min_keys = MIN_KEYS


@torch.library.custom_op("video_studio::sage_attention", mutates_args=())
def sage_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """SageAttention 2 (``sageattn``: int8 Q·K, fp8 or fp16 P·V by GPU) on (B, S, H, D) tensors."""
    from sageattention import sageattn

    return sageattn(query, key, value, tensor_layout="NHD", is_causal=False, sm_scale=scale)


@sage_attention.register_fake
def _sage_attention_fake(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    return query.new_empty(*query.shape[:-1], value.shape[-1])


def _sdpa_bshd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, causal: bool):
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=scale
    )
    return out.transpose(1, 2)


def _hub_style_kernel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tensor_layout: str = "NHD",
    is_causal: bool = False,
    sm_scale: float | None = None,
    return_lse: bool = False,
) -> torch.Tensor:
    """The call signature diffusers' ``sage_hub`` backend uses, routed by key length."""
    if tensor_layout != "NHD" or return_lse:
        raise NotImplementedError(
            "the 8-bit attention backend takes (batch, seq, heads, head_dim) tensors and returns no "
            "log-sum-exp (ring context parallel is not supported)"
        )
    if _kernel is None:
        raise RuntimeError("8-bit attention is not installed as a backend; call an install_* function")
    if is_causal or k.shape[1] < _min_keys or q.shape[-1] not in HEAD_DIMS:
        return _sdpa_bshd(q, k, v, sm_scale, is_causal)
    return _kernel(q, k, v, sm_scale)


def fp8_attention_installed() -> bool:
    """Whether :func:`install_fp8_attention` has filled the backend's slot in this process."""
    return _kernel_name == "fp8"


def sage_attention_installed() -> bool:
    """Whether :func:`install_sage_attention` has filled the backend's slot in this process."""
    return _kernel_name == "sage"


def install_fp8_attention(kernel: Kernel | None = None, min_keys: int = MIN_KEYS) -> None:
    """Fill diffusers' ``sage_hub`` kernel slot with our 8-bit attention (or ``kernel``, same signature
    as :func:`core.kernels.fp8_attention.fp8_attention`, for tests); ``min_keys`` as in the module
    docstring."""
    if kernel is None:
        from core.kernels.fp8_attention import fp8_attention as kernel
    _install("fp8", kernel, min_keys)


def install_sage_attention(kernel: Kernel = sage_attention, min_keys: int = MIN_KEYS) -> None:
    """Fill diffusers' ``sage_hub`` kernel slot with SageAttention (``kernel``: a stand-in for tests)."""
    _install("sage", kernel, min_keys)


def _install(name: str, kernel: Kernel, min_keys: int) -> None:
    global _kernel, _kernel_name, _min_keys
    from diffusers.models.attention_dispatch import _HUB_KERNELS_REGISTRY, AttentionBackendName

    _kernel, _kernel_name, _min_keys = kernel, name, min_keys
    _HUB_KERNELS_REGISTRY[AttentionBackendName(BACKEND)].kernel_fn = _hub_style_kernel
