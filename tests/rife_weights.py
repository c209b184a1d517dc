"""Seeded random RIFE (IFNet v4.26 layout) weights in the authors' ``flownet.pkl`` format (keys with
``module.``), the same on every machine: the golden of ``tests/data/reference/rife_middle.npz`` was made
from them (``tests/tools/make_rife_golden.py``) and the tests load them into ``core.rife``."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from core.rife import IFNet

V4_26 = (16, 4, (192, 128, 96, 64, 32))
"""The authors' v4.26 head width, feature channels and block widths."""
TINY = (8, 4, (16, 16, 8, 8, 8))
HEIGHT, WIDTH = 64, 64


def frames() -> tuple[torch.Tensor, torch.Tensor]:
    """Two smooth random frames (1, 3, 64, 64) in [0, 1], the second the first moved 5 pixels left."""
    noise = torch.rand(1, 3, HEIGHT // 8, WIDTH // 8 + 1, generator=torch.Generator().manual_seed(7))
    big = F.interpolate(noise, size=(HEIGHT, WIDTH + 8), mode="bicubic", align_corners=False).clamp(0, 1)
    return big[..., :WIDTH].contiguous(), big[..., 5 : WIDTH + 5].contiguous()


def seeded_flownet(layout=V4_26, seed: int = 0) -> dict[str, torch.Tensor]:
    """Normal weights scaled by 1 / sqrt(fan in), vectors small; one generator per key (sorted)."""
    head, features, widths = layout
    shapes = {k: tuple(v.shape) for k, v in IFNet(head, features, widths).state_dict().items()}
    state = {}
    for index, key in enumerate(sorted(shapes)):
        shape = shapes[key]
        values = torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1000 + index))
        fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
        state[f"module.{key}"] = values / fan_in**0.5 if len(shape) > 1 else values * 0.05
    return state


def save_tiny_flownet(path: Path, seed: int = 0) -> Path:
    """A tiny random ``flownet.pkl`` (authors' keys, narrow widths) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_flownet(TINY, seed), path)
    return path
