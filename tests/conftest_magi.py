"""Fixtures for the MAGI-1 DiT tests: tiny checkpoints built once, a stand-in VAE, a caption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.magi.loading import load_magi_dit
from core.tiny.magi_dit import build_tiny_magi_dit

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class StandInVAE:
    """Average-pool encoder / nearest-upsample decoder with the MAGI-1 VAE's factors and 16 channels."""

    temporal_factor = 4
    spatial_factor = 8
    latent_channels = 16

    def __init__(self) -> None:
        self.decoded = 0

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool3d(video, (self.temporal_factor, self.spatial_factor, self.spatial_factor))
        return pooled.repeat(1, 6, 1, 1, 1)[:, : self.latent_channels]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.decoded += 1
        scale = (self.temporal_factor, self.spatial_factor, self.spatial_factor)
        return F.interpolate(latents[:, :3], scale_factor=scale, mode="nearest").clamp(-1, 1)


@pytest.fixture(scope="session")
def magi_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("magi")
    return {v: build_tiny_magi_dit(root / v, v) for v in ("4.5B_distill", "4.5B_base", "4.5B_distill_quant")}


@pytest.fixture(scope="session")
def distill_dit(magi_folders):
    return load_magi_dit(magi_folders["4.5B_distill"], dtype=torch.float32)


@pytest.fixture(scope="session")
def base_dit(magi_folders):
    return load_magi_dit(magi_folders["4.5B_base"], dtype=torch.float32)


@pytest.fixture
def vae() -> StandInVAE:
    return StandInVAE()


@pytest.fixture
def caption() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[:, :12] = True
    return torch.randn(1, 20, 32, generator=generator), mask
