"""Pinning a child process to GPUs through ``CUDA_VISIBLE_DEVICES`` (no torch import here)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def cuda_visible_devices(gpus: Sequence[int]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value that shows a child the parent's GPUs ``gpus``.

    ``gpus`` are indices as the parent sees them; when the parent itself runs under ``CUDA_VISIBLE_DEVICES``
    they are translated through it (parent ``2,3`` and gpus ``(1,)`` give ``3``).
    """
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [part.strip() for part in inherited.split(",")] if inherited else None
    return ",".join(visible[gpu] if visible else str(gpu) for gpu in gpus)


def pin_to_gpus(gpus: Sequence[int]) -> None:
    """Show this process only ``gpus``; call before CUDA starts (before any ``torch.cuda`` call)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(gpus)
