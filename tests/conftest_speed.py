"""Fixtures for the speed tests: fresh tiny Wan pipelines, one DiT forward's inputs, a head-size-64 DiT."""

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


@pytest.fixture
def wan_dit():
    """A tiny Wan DiT with Wan's head size class (64) so self-attention takes the 8-bit path, and inputs:
    48 video tokens, 8 text tokens."""
    from diffusers import WanTransformer3DModel

    from core.tiny.wan import TINY_TRANSFORMER

    torch.manual_seed(0)
    config = {**TINY_TRANSFORMER, "attention_head_dim": 64, "in_channels": 4, "out_channels": 4}
    model = WanTransformer3DModel(**config)
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(2, 4, 3, 8, 8, generator=generator),
        "timestep": torch.tensor([500, 500]),
        "encoder_hidden_states": torch.randn(2, 8, 32, generator=generator),
    }
    return model.eval(), inputs


@pytest.fixture
def restore_backend_slot():
    """Tests install stand-in 8-bit kernels: put the slot back exactly as it was before the test."""
    from diffusers.models.attention_dispatch import _HUB_KERNELS_REGISTRY, AttentionBackendName

    import core.speed.fp8_attention as glue

    slot = _HUB_KERNELS_REGISTRY[AttentionBackendName(glue.BACKEND)]
    saved = (glue._kernel, glue._kernel_name, glue._min_keys, slot.kernel_fn)
    yield
    glue._kernel, glue._kernel_name, glue._min_keys, slot.kernel_fn = saved
