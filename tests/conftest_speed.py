"""Fixtures for the speed tests: fresh tiny Wan pipelines and one DiT forward's inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_wan_dir(models_dir: Path) -> Path:
    """The tiny Wan pipeline that tests/conftest.py builds once per session."""
    return models_dir / "tiny-wan"


@pytest.fixture
def load_pipe(tiny_wan_dir: Path):
    """A function giving a freshly loaded float32 tiny ``WanPipeline`` on the CPU each call."""
    from diffusers import WanPipeline

    def load():
        pipe = WanPipeline.from_pretrained(tiny_wan_dir, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return load


@pytest.fixture(scope="session")
def dit_inputs() -> dict[str, torch.Tensor]:
    """One DiT forward's inputs for the tiny model: CFG batch 2, 3 latent frames of 8x8."""
    generator = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(2, 16, 3, 8, 8, generator=generator),
        "timestep": torch.tensor([500, 500]),
        "encoder_hidden_states": torch.randn(2, 8, 32, generator=generator),
    }
