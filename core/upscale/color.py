"""Colour correction of decoded frames towards the LQ input: AdaIN per frame and channel (FlashVSR v1.1)."""

from __future__ import annotations

import torch


def adain_color_fix(frames: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give each frame of ``frames`` (1, 3, T, H, W) the per-channel mean and std of ``reference``; clamp
    to [-1, 1]."""
    x, ref = frames.float(), reference.float()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = (x.var(dim=(-2, -1), keepdim=True, unbiased=False) + eps).sqrt()
    ref_mean = ref.mean(dim=(-2, -1), keepdim=True)
    ref_std = (ref.var(dim=(-2, -1), keepdim=True, unbiased=False) + eps).sqrt()
    return ((x - mean) / std * ref_std + ref_mean).clamp(-1.0, 1.0).to(frames.dtype)
