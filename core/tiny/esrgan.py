"""Tiny random-weight Real-ESRGAN files in the official key layouts and wrappers, for tests and ``--dev``."""

from __future__ import annotations

from pathlib import Path

import torch

from core.upscale.esrgan import RRDBNet, SRVGGNetCompact

TINY_FILE = "realesr-general-x4v3.pth"


def tiny_rrdbnet_checkpoint(scale: int = 4, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """An RRDBNet (1 block, 8 features, 32 growth channels as in every published one) as the official
    RealESRGAN_x{scale}plus.pth holds it."""
    torch.manual_seed(seed)
    module = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=32)
    return {"params_ema": {k: v.detach().clone() for k, v in module.state_dict().items()}}


def tiny_compact_checkpoint(scale: int = 4, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """An SRVGGNetCompact (2 convs, 8 features) as the official realesr-*-x4v3.pth files hold it."""
    torch.manual_seed(seed)
    module = SRVGGNetCompact(scale=scale, num_feat=8, num_conv=2)
    return {"params": {k: v.detach().clone() for k, v in module.state_dict().items()}}


def build_tiny_esrgan(folder: Path, seed: int = 0) -> Path:
    """Write a tiny x4 compact model under the official file name into ``folder`` (the compact one: a tiny
    RRDBNet still has 32 growth channels, too slow for a whole clip on a test CPU)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_compact_checkpoint(4, seed), folder / TINY_FILE)
    return folder
