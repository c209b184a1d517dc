"""Fixtures for the MAGI-1 VAE / text tests: the tiny VAE, T5 and special tokens, built once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def magi_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot root holding the tiny VAE, T5 and special tokens in the published layout."""
    from core.tiny.magi import build_tiny_magi_parts

    folder = tmp_path_factory.mktemp("magi") / "tiny-magi"
    build_tiny_magi_parts(folder)
    return folder


@pytest.fixture(scope="session")
def magi_vae(magi_parts: Path):
    from core.magi.vae import MagiVAE

    return MagiVAE.from_pretrained(magi_parts, "cpu", torch.float32)


@pytest.fixture(scope="session")
def magi_text(magi_parts: Path):
    from core.magi.text import MagiTextEncoder

    return MagiTextEncoder.from_pretrained(magi_parts, "cpu", torch.float32, max_length=64)
