"""Resolve a model card to a local folder: ``--models-dir``, then the Hugging Face cache, then download.

Also answers "what is on this machine": per model missing / partial / ready with its size, and deletes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from core.validation import ConfigError
from weights.download import READY_MARKER, WORK_DIR, download_model, read_plan
from weights.progress import DownloadProgress, human_bytes
from weights.registry import ModelCard, load_cards

__all__ = [
    "DownloadProgress",
    "ModelMissingError",
    "ModelStatus",
    "delete_model",
    "ensure_model",
    "list_models",
    "model_status",
]

BUILT_MARKER = ".built"
"""Written by a card's builder once it has built the model into the card's folder."""
FP8_CACHE_DIRNAME = ".fp8-cache"
STATES = ("missing", "partial", "ready")

Builder = Callable[[str, Path, Any], Path]
"""Builds the model a card's ``builder`` names into a folder (which it returns), sized by the card's
``arch`` facts where the builder takes them, unless its :data:`BUILT_MARKER` is there: the tiny test
models, whose builders live in ``core.tiny``."""


class ModelMissingError(ConfigError):
    """The weights are not on this machine and may not be downloaded (offline)."""


@dataclass(frozen=True)
class ModelStatus:
    """What is on disk for one model."""

    card_id: str
    name: str
    state: str
    size_bytes: int
    folder: Path | None
    where: str = ""

    @property
    def size_label(self) -> str:
        return human_bytes(self.size_bytes) if self.size_bytes else "-"


def model_dir(card: ModelCard, settings: Settings) -> Path:
    """Where this card's weights live inside ``--models-dir``."""
    return settings.models_dir / card.id


def fp8_cache_dir(models_dir: Path, card_id: str) -> Path:
    """Where one model card's fp8 cache files live (memory level 5, written by ``core.memory.fp8_cache``)."""
    return Path(models_dir) / FP8_CACHE_DIRNAME / card_id


def is_offline(settings: Settings) -> bool:
    """Offline by the app's ``--offline`` flag or by ``HF_HUB_OFFLINE`` (read now, not at import)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return settings.offline or flag or constants.is_offline_mode()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".ckpt", ".pt", ".gguf")


def component_complete(folder: Path) -> bool:
    """A diffusers component folder holds its weights (every shard its index names), or is config-only
    (scheduler, tokenizer) when it has no model ``config.json``."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return False
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError):
            return False
        return all((folder / shard).is_file() for shard in shards)
    if (folder / "config.json").is_file():
        return any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir())
    return True


def looks_complete(folder: Path, card: ModelCard) -> bool:
    """Whether a folder placed by hand (or by another tool) holds the card's files: every component that
    ``model_index.json`` names with its weights, or a file for every ``allow_patterns`` entry."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if index.is_file():
        try:
            components = json.loads(index.read_text(encoding="utf-8"))
        except ValueError:
            return False
        named = [k for k, v in components.items() if not k.startswith("_") and isinstance(v, list) and v[0]]
        return all(component_complete(folder / name) for name in named)
    if not card.allow_patterns:
        return False
    return all(any(p.is_file() for p in folder.glob(pattern)) for pattern in card.allow_patterns)


def ready_in_models_dir(card: ModelCard, settings: Settings) -> Path | None:
    """The card's folder in ``--models-dir`` when it is ready: our marker, a built tiny model, or files
    placed by hand with no unfinished download of ours in it."""
    folder = model_dir(card, settings)
    if (folder / READY_MARKER).is_file() or (folder / BUILT_MARKER).is_file():
        return folder
    if folder.is_dir() and not (folder / WORK_DIR).exists() and looks_complete(folder, card):
        return folder
    return None


def cached_snapshot(card: ModelCard) -> Path | None:
    """A complete copy already in the standard Hugging Face cache, found without any network call."""
    if not card.huggingface:
        return None
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(
            snapshot_download(card.huggingface, cache_dir=constants.HF_HUB_CACHE, local_files_only=True)
        )
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if looks_complete(folder, card) else None


def local_copy(card: ModelCard, settings: Settings) -> Path | None:
    """A ready copy on this machine (``--models-dir`` first, then the HF cache), with no network call."""
    return ready_in_models_dir(card, settings) or cached_snapshot(card)


def missing_message(card: ModelCard, settings: Settings) -> str:
    """One message naming the folder and the files to put there by hand."""
    folder = model_dir(card, settings)
    planned = list(read_plan(folder).get("files", {}))
    repo = card.huggingface or card.modelscope
    if planned:
        files = ", ".join(planned)
    elif card.allow_patterns:
        files = ", ".join(card.allow_patterns)
    else:
        files = "every file of the repo (model_index.json and the component folders it names)"
    return (
        f"{card.name} is not downloaded and the app is offline (--offline or HF_HUB_OFFLINE). "
        f"Download {repo} elsewhere and place these files, keeping their sub-folders, in {folder}: {files}"
    )


def ensure_model(
    card: ModelCard,
    settings: Settings,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    build: Builder | None = None,
) -> Path:
    """The local folder holding ``card``'s weights, downloading when needed; a card with a ``builder`` (tiny
    test models) is built by ``build`` instead (``core.model_store.ensure_model`` passes core's builders)."""
    if card.builder:
        if build is None:
            raise ConfigError(f"{card.name} is built locally, not downloaded, and no builder was given")
        return build(card.builder, model_dir(card, settings), card.arch)
    found = local_copy(card, settings)
    if found is not None:
        return found
    if is_offline(settings):
        raise ModelMissingError(missing_message(card, settings))
    return download_model(card, model_dir(card, settings), on_progress, should_cancel)


def folder_size(folder: Path) -> int:
    """Bytes of every file under ``folder``, following the HF cache's symlinks to their blobs."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def model_status(card: ModelCard, settings: Settings) -> ModelStatus:
    """Missing / partial / ready for one card, with its size on disk and where it is."""
    ready = ready_in_models_dir(card, settings)
    if ready is not None:
        return ModelStatus(card.id, card.name, "ready", folder_size(ready), ready, "models dir")
    cached = cached_snapshot(card)
    if cached is not None:
        return ModelStatus(card.id, card.name, "ready", folder_size(cached), cached, "Hugging Face cache")
    folder = model_dir(card, settings)
    if folder.is_dir() and any(folder.iterdir()):
        return ModelStatus(card.id, card.name, "partial", folder_size(folder), folder, "models dir")
    return ModelStatus(card.id, card.name, "missing", 0, None)


def list_models(settings: Settings, dev: bool = False) -> list[ModelStatus]:
    """Every card's status; test models only when ``dev`` is set."""
    return [model_status(c, settings) for c in load_cards().values() if dev or not c.dev]


def delete_model(card: ModelCard, settings: Settings) -> int:
    """Delete the card's folder in ``--models-dir`` (ready or partial) and its fp8 cache (memory level 5),
    and return the bytes freed.

    The shared Hugging Face cache is left alone: other tools may use it.
    """
    freed = 0
    for folder in (model_dir(card, settings), fp8_cache_dir(settings.models_dir, card.id)):
        if folder.exists():
            freed += folder_size(folder)
            shutil.rmtree(folder)
    return freed
