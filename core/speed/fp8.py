"""fp8 rowwise linears (dynamic activation scales) through torchao: the lossy half of Turbo."""

from __future__ import annotations

from typing import Any

import torch

FP8_MIN_CAPABILITY = (8, 9)
"""fp8 matmuls (``torch._scaled_mm``) need Ada (SM89), Hopper or newer."""


def fp8_unavailable(device: torch.device) -> str | None:
    """Why fp8 linears cannot run on ``device``, or ``None`` when they can."""
    if device.type != "cuda":
        return f"fp8 linears need a CUDA GPU (running on {device.type})"
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        return f"fp8 linears need SM89 or newer (this GPU is sm_{capability[0]}{capability[1]})"
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow  # noqa: F401
    except Exception as error:
        return f"torchao is not importable ({type(error).__name__}: {error})"
    return None


def is_block_linear(module: torch.nn.Module, name: str) -> bool:
    """Linears inside the transformer blocks whose sizes fp8 GEMMs accept (multiples of 16)."""
    return (
        isinstance(module, torch.nn.Linear)
        and name.startswith("blocks.")
        and ".lora_" not in name  # user LoRAs' adapters stay in the compute dtype (hot-swapped)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def quantize_linears_fp8(model: Any) -> int:
    """Swap the block linears of ``model`` to fp8 rowwise in place; returns how many were swapped."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    chosen = [name for name, module in model.named_modules() if is_block_linear(module, name)]
    quantize_(
        model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=is_block_linear
    )
    return len(chosen)
