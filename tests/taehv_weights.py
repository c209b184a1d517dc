"""Seeded random TAEHV weights in the authors' key format (``decoder.<index>...``), the same on every
machine: the golden of ``tests/data/reference/taehv_decode.npz`` was made from them with the authors' code
(``tests/tools/make_taehv_golden.py``) and the tests load them into ``core.taehv``."""

from __future__ import annotations

from pathlib import Path

import torch

from core.taehv import TinyVideoDecoder

FULL_WIDTHS = (256, 128, 64, 64)
"""The authors' decoder widths."""
TINY_WIDTHS = (8, 8, 4, 4)


def authors_shapes(latent_channels: int, widths=FULL_WIDTHS, patch: int = 1) -> dict[str, tuple[int, ...]]:
    """The shape of every decoder weight in an authors' checkpoint (its ``TGrow`` of stage 1 holds 2
    frames' channels, as their files do; the decoder keeps the last)."""
    model = TinyVideoDecoder(latent_channels, widths, patch)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    shapes["decoder.7.conv.weight"] = (2 * widths[0], widths[0], 1, 1)
    return shapes


def seeded_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Normal weights scaled by 1 / sqrt(fan in), biases small (the output's centred on grey, so that most
    pixels are inside (0, 1)); one generator per key (sorted)."""
    state = {}
    for index, key in enumerate(sorted(shapes)):
        shape = shapes[key]
        generator = torch.Generator().manual_seed(seed * 1000 + index)
        values = torch.randn(shape, generator=generator)
        fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
        state[key] = values / fan_in**0.5 if len(shape) > 1 else values * 0.05
    out_bias = max((k for k in state if k.endswith(".bias")), key=lambda k: int(k.split(".")[1]))
    state[out_bias] = state[out_bias] + 0.5
    return state


def save_tiny_taehv(path: Path, latent_channels: int = 16, patch: int = 1, seed: int = 0) -> Path:
    """A tiny random TAEHV decoder file (authors' keys, narrow widths) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_state(authors_shapes(latent_channels, TINY_WIDTHS, patch), seed), path)
    return path
