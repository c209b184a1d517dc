"""FlashAttention-4 (``flash-attn-4``, CuTe DSL) as a diffusers attention backend that compiles cleanly.

diffusers 0.42.1 already ships the backend ``flash_4_hub``: its function calls a kernel it would fetch from
the Hub (``kernels-community/flash-attn4``) through the ``kernels`` package. We run that same diffusers
backend with the locally installed ``flash_attn.cute.flash_attn_func`` instead, wrapped as a torch custom op
(with a fake implementation) so ``torch.compile(fullgraph=True)`` traces through it without a graph break.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

BACKEND = "flash_4_hub"
"""The diffusers ``AttentionBackendName`` value whose kernel slot we fill."""

Kernel = Callable[..., object]
_kernel: Kernel | None = None


@torch.library.custom_op("video_studio::flash4_attention", mutates_args=())
def flash4_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """Attention on (batch, seq, heads, head_dim) tensors through the installed FA4 kernel."""
    if _kernel is None:
        raise RuntimeError("FlashAttention-4 is not installed as a backend; call install_flash4() first")
    query, key, value = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value))
    out = _kernel(query, key, value, softmax_scale=scale, causal=causal)
    return out[0] if isinstance(out, tuple) else out


@flash4_attention.register_fake
def _flash4_attention_fake(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float | None = None,
    causal: bool = False,
) -> torch.Tensor:
    return query.new_empty(*query.shape[:-1], value.shape[-1])


def _hub_style_kernel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    softmax_scale: float | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """The call signature diffusers' ``flash_4_hub`` backend uses, routed to our custom op."""
    return flash4_attention(q, k, v, softmax_scale, causal)


@functools.lru_cache(maxsize=1)
def flash4_import_error() -> str | None:
    """``None`` when ``flash_attn.cute`` imports, else why not (checked once; the import is heavy)."""
    try:
        from flash_attn.cute import flash_attn_func  # noqa: F401
    except Exception as error:  # CuTe DSL can fail with non-import errors on unsupported setups
        return f"flash-attn-4 is not importable ({type(error).__name__}: {error})".strip()
    return None


def flash4_installed() -> bool:
    """Whether :func:`install_flash4` has given the op its kernel in this process."""
    return _kernel is not None


def install_flash4(kernel: Kernel | None = None) -> None:
    """Fill diffusers' ``flash_4_hub`` kernel slot with FA4 (or ``kernel``, same signature, for tests)."""
    global _kernel
    from diffusers.models.attention_dispatch import _HUB_KERNELS_REGISTRY, AttentionBackendName

    if kernel is None:
        from flash_attn.cute import flash_attn_func as kernel
    _kernel = kernel
    _HUB_KERNELS_REGISTRY[AttentionBackendName(BACKEND)].kernel_fn = _hub_style_kernel
