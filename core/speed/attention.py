"""Which attention kernel the DiT uses: picked per GPU at start, applied through diffusers' dispatcher."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from core.speed import flash4

BACKENDS = {
    "flash4": flash4.BACKEND,
    "flash": "flash",
    "cudnn": "_native_cudnn",
    "sdpa": "native",
    "sage": "sage",
}
"""Our names -> diffusers ``AttentionBackendName`` values. ``sage`` (8-bit) is only reached through Turbo."""

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
        from diffusers.models.attention_dispatch import _CAN_USE_SAGE_ATTN

        return None if _CAN_USE_SAGE_ATTN else "SageAttention (8-bit attention) is not installed"
    return None  # cudnn: part of torch on every CUDA build


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
    if name != "flash4":
        model.set_attention_backend(BACKENDS[name])
        return
    # diffusers' set_attention_backend insists on the Hub `kernels` package for this backend although the
    # kernel is already installed locally, so set the processors' backend the way it does.
    from diffusers.models.attention_dispatch import AttentionBackendName

    if not flash4.flash4_installed():
        flash4.install_flash4()
    backend = AttentionBackendName(flash4.BACKEND)
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            processor._attention_backend = backend
