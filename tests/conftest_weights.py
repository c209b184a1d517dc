"""Fixtures for the weights tests: tiny repos served by a fake Hugging Face Hub + ModelScope."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_hub import CHUNK, FLASHVSR_FILES, FLASHVSR_REPO, TINY_REPO, FakeHub, point_clients_at

from core.settings import Settings


@pytest.fixture(scope="session")
def tiny_wan_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.tiny.wan import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("repos") / "tiny-wan")


@pytest.fixture(scope="session")
def flashvsr_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("repos") / "flashvsr"
    folder.mkdir()
    for name, size in FLASHVSR_FILES.items():
        (folder / name).write_bytes(os.urandom(size))
    (folder / "README.md").write_text("# FlashVSR test files\n")
    (folder / "assets.txt").write_text("not in allow_patterns, never fetched\n")
    return folder


@pytest.fixture(scope="session")
def fake_hub_server(tiny_wan_repo: Path, flashvsr_repo: Path):
    hub = FakeHub()
    hub.add_repo(TINY_REPO, tiny_wan_repo)
    hub.add_repo(FLASHVSR_REPO, flashvsr_repo)
    yield hub
    hub.close()


@pytest.fixture
def hub(fake_hub_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The fake hub with fresh counters, both clients pointed at it, an empty HF cache and small chunks."""
    from huggingface_hub import constants
    from modelscope.hub import file_download
    from modelscope_hub import _legacy_api

    import weights.sources

    fake_hub_server.reset()
    for key, value in point_clients_at(fake_hub_server.url).items():
        monkeypatch.setenv(key, value)
    for key in ("HF_HUB_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    monkeypatch.setattr(file_download, "API_FILE_DOWNLOAD_CHUNK_SIZE", CHUNK)
    monkeypatch.setattr(weights.sources, "MODELSCOPE_RETRIES", 0)
    monkeypatch.setattr(_legacy_api, "REPO_TREE_PAGE_MAX_ATTEMPTS", 1)
    yield fake_hub_server
    fake_hub_server.reset()


@pytest.fixture
def hub_settings(tmp_path: Path) -> Settings:
    return Settings(outputs_dir=tmp_path / "outputs", models_dir=tmp_path / "models")
