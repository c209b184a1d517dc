"""Shared fixtures for the memory tests: the tiny Wan pipeline built once, and a runner for it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.hardware import GpuInfo, Hardware
from core.settings import ROOT
from core.tiny import build
from weights.registry import get_card

PROMPT = "a red car on a street"
NEGATIVE = "blurry"


@pytest.fixture(scope="session")
def tiny_wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("tiny-wan", tmp_path_factory.mktemp("memory") / "tiny-wan")


@pytest.fixture(scope="session")
def tiny_card():
    return get_card("tiny-wan")


def _render(pipe, steps: int = 2) -> np.ndarray:
    out = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=48,
        width=64,
        num_frames=9,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
        max_sequence_length=32,
    )
    return np.asarray(out.frames[0])


def _fake_hardware(free_vram_gb: float | None, ram_gb: float, total_vram_gb: float = 80.0) -> Hardware:
    gpus = () if free_vram_gb is None else (GpuInfo(0, "Fake GPU", total_vram_gb, free_vram_gb, (9, 0)),)
    return Hardware(gpus, ram_gb, ram_gb)


@pytest.fixture(scope="session")
def render():
    """``render(pipe)``: a short fixed-seed video from ``pipe`` as float frames (T, H, W, 3)."""
    return _render


@pytest.fixture(scope="session")
def fake_hardware():
    """``fake_hardware(free_vram_gb, ram_gb)``: one fake GPU (None: no GPU) and that much RAM available."""
    return _fake_hardware


MEDIUM_WAN = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=8,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=4096,
    num_layers=11,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=1024,
)
"""A ~200M-parameter Wan DiT (14B-like block layout at dim 1024) for RAM measurements."""


@pytest.fixture(scope="session")
def medium_wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``MEDIUM_WAN`` with random bf16 weights saved as ~100 MB safetensors shards (a few seconds)."""
    from diffusers import WanTransformer3DModel

    folder = tmp_path_factory.mktemp("medium") / "transformer"
    with torch.device("meta"):
        model = WanTransformer3DModel(**MEDIUM_WAN)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator).mul_(0.02))
    model.save_pretrained(folder, max_shard_size="100MB")
    return folder


@pytest.fixture
def child_env() -> dict[str, str]:
    """The environment for a measuring child process: the project first on ``PYTHONPATH``, then whatever
    path this run already had (packages installed with ``--target`` on the GPU machine)."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path}
