"""MAGI-1's 3D rotary position embedding with learnable frequency bands.

The published module ``rope`` holds one parameter, ``bands`` (head_dim / 8 inverse frequencies). Positions
are the latent frame index (absolute from the first chunk of the video) and the patch row / column centred
on the frame middle and rescaled to a 16x16 reference grid. The table is ``[tokens, 3 * bands]`` sines and
cosines; it rotates the first ``6 * bands`` channels of every query / key head, leaving the rest untouched.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def default_bands(head_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The bands the model was initialised with (``1 / temperature ** (i / n)``)."""
    count = head_dim // 8
    return 1.0 / temperature ** (torch.arange(count, dtype=torch.float32) / count)


class LearnableRope(nn.Module):
    """Holds ``bands``; :meth:`table` gives sin / cos for a grid of latent frames and patches."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.bands = nn.Parameter(default_bands(head_dim))

    def table(self, frames: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sin and cos ``[len(frames) * height * width, 3 * bands]`` for frame positions ``frames``."""
        device = self.bands.device
        scale = math.sqrt(height * width / 256.0)
        rows = _centred(height, height / scale, device)
        cols = _centred(width, width / scale, device)
        grid = torch.stack(
            torch.meshgrid(frames.to(device=device, dtype=torch.float32), rows, cols, indexing="ij"), dim=-1
        )
        angles = (grid.unsqueeze(-1) * self.bands.float()).reshape(grid.shape[0] * height * width, -1)
        return angles.sin(), angles.cos()


def _centred(size: int, reference: float, device: torch.device) -> torch.Tensor:
    positions = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    if size == 1:
        return positions
    return positions / (size - 1) * (reference - 1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [..., tokens, heads, head_dim]`` (float) by the non-interleaved halves of the table."""
    half = sin.shape[-1]
    sin = sin[:, None, :]
    cos = cos[:, None, :]
    first, second, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat([first * cos - second * sin, first * sin + second * cos, rest], dim=-1)
