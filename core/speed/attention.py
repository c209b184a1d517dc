"""Which attention kernel the DiT uses: picked per GPU at start, applied through diffusers' dispatcher."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch

from core.speed import flash4, fp8_attention

BACKENDS = {
    "flash4": flash4.BACKEND,
    "flash": "flash",
    "cudnn": "_native_cudnn",
    "sdpa": "native",
    "sage": fp8_attention.BACKEND,
    "fp8": fp8_attention.BACKEND,
}
"""Our names -> diffusers ``AttentionBackendName`` values. ``sage`` and ``fp8`` (8-bit, lossy) are only
reached through Turbo (:func:`pick_turbo_attention`)."""
HUB_SLOTS = {
    "flash4": (flash4.flash4_installed, flash4.install_flash4),
    "sage": (fp8_attention.sage_attention_installed, fp8_attention.install_sage_attention),
    "fp8": (fp8_attention.fp8_attention_installed, fp8_attention.install_fp8_attention),
}
"""Our backends that fill a diffusers hub-kernel slot with a local kernel: (installed?, install)."""

SAGE_CAPABILITIES = ((8, 0), (8, 6), (8, 9), (9, 0), (12, 0), (12, 1))
"""GPUs with SageAttention CUDA kernels (pinned commit); ``sageattn`` raises on others (e.g. SM100)."""
FLASH4_ARCHS = (9, 10)
"""FA4 runs bf16 on Hopper (SM90) and Blackwell datacenter parts (SM100/SM103)."""


class AttentionChoice(NamedTuple):
    name: str
    reason: str

    @property
    def backend(self) -> str:
        """The diffusers backend value, e.g. ``native`` or ``flash_4_hub``."""
        return BACKENDS[self.name]


def backend_unavailable(name: str, device: torch.device) -> str | None:
    """Why backend ``name`` cannot run on ``device``, or ``None`` when it can."""
    if name == "sdpa":
        return None
    if device.type != "cuda":
        return f"{name} needs a CUDA GPU (running on {device.type})"
    capability = torch.cuda.get_device_capability(device)
    if name == "flash4":
        if capability[0] not in FLASH4_ARCHS:
            return f"flash4 needs SM90 or SM100 (this GPU is sm_{capability[0]}{capability[1]})"
        return flash4.flash4_import_error()
    if name == "flash":
        from diffusers.models.attention_dispatch import _CAN_USE_FLASH_ATTN

        return None if _CAN_USE_FLASH_ATTN else "flash-attn 2 (>= 2.6.3) is not installed"
    if name == "sage":
        if capability not in SAGE_CAPABILITIES:
            return f"SageAttention has no kernels for sm_{capability[0]}{capability[1]}"
        return sage_import_error()
    if name == "fp8":
        from core.kernels.fp8_attention import fp8_attention_unavailable

        return fp8_attention_unavailable(device)
    return None  # cudnn: part of torch on every CUDA build


@functools.lru_cache(maxsize=1)
def sage_import_error() -> str | None:
    """``None`` when SageAttention's CUDA kernels import, else why not (checked once)."""
    try:
        from sageattention import sageattn  # noqa: F401
    except Exception as error:  # a build for another torch fails at import with OSError/ImportError
        return f"SageAttention is not installed (the installer builds it where nvcc is present): {error}"
    return None


def pick_attention_backend(device: torch.device) -> AttentionChoice:
    """The fastest lossless attention backend usable on ``device``, with the reason for the pick."""
    if device.type != "cuda":
        return AttentionChoice("sdpa", f"{device.type}: PyTorch SDPA")
    gpu = torch.cuda.get_device_name(device)
    why_not_fa4 = backend_unavailable("flash4", device)
    if why_not_fa4 is None:
        return AttentionChoice("flash4", f"{gpu}: FlashAttention-4 (fastest measured on Hopper/Blackwell)")
    if torch.cuda.get_device_capability(device)[0] < 9 and backend_unavailable("flash", device) is None:
        return AttentionChoice("flash", f"{gpu}: flash-attn 2 ({why_not_fa4})")
    return AttentionChoice("sdpa", f"{gpu}: PyTorch SDPA, which picks cuDNN/flash itself ({why_not_fa4})")


def pick_turbo_attention(device: torch.device) -> tuple[str | None, str]:
    """Turbo's 8-bit attention on ``device``: ``sage`` (SageAttention 2's CUDA kernels, when installed;
    788 vs 694 TFLOP/s for ``fp8`` on an H100), else ``fp8`` (our Triton kernel), else ``None``; with the
    reason. Either runs attention over >= ``MIN_KEYS`` keys; shorter (text) stays on SDPA."""
    where = f"for attention over >= {fp8_attention.MIN_KEYS} keys, shorter (text) on SDPA"
    why_not_sage = backend_unavailable("sage", device)
    if why_not_sage is None:
        return "sage", f"SageAttention 2 (int8 QK; fp8 PV on SM89/90/120, fp16 on SM80/86) {where}"
    why_not_fp8 = backend_unavailable("fp8", device)
    if why_not_fp8 is None:
        return "fp8", f"8-bit Triton kernel (int8 QK, fp8 PV) {where}; {why_not_sage}"
    return None, why_not_fp8 if device.type != "cuda" else f"{why_not_fp8}; {why_not_sage}"


def resolve_attention(asked: str, device: torch.device) -> AttentionChoice:
    """``asked`` (a name or ``auto``) made concrete; a backend that cannot run here falls back to the pick."""
    if asked == "auto":
        return pick_attention_backend(device)
    why_not = backend_unavailable(asked, device)
    if why_not is None:
        return AttentionChoice(asked, "asked for")
    fallback = pick_attention_backend(device)
    return AttentionChoice(
        fallback.name, f"{asked} asked but unavailable: {why_not}; using {fallback.reason}"
    )


def use_attention_backend(model: Any, name: str) -> None:
    """Route every attention of ``model`` (a diffusers model) to backend ``name`` (one of ``BACKENDS``)."""
    if name not in HUB_SLOTS:
        model.set_attention_backend(BACKENDS[name])
        return
    # diffusers' set_attention_backend insists on the Hub `kernels` package for hub-slot backends although
    # our kernel is already installed locally, so set the processors' backend the way it does.
    from diffusers.models.attention_dispatch import AttentionBackendName

    installed, install = HUB_SLOTS[name]
    if not installed():
        install()
    backend = AttentionBackendName(BACKENDS[name])
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            processor._attention_backend = backend
