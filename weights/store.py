"""Resolve a model card to a local folder: ``--models-dir``, then the Hugging Face cache, then download."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from core.validation import ConfigError
from weights import tiny
from weights.registry import ModelCard


class ModelMissingError(ConfigError):
    """The weights are not on this machine and may not be downloaded (offline)."""


def model_dir(card: ModelCard, settings: Settings) -> Path:
    """Where this card's weights live inside ``--models-dir``."""
    return settings.models_dir / card.id


def is_complete(folder: Path) -> bool:
    """A folder counts as a ready diffusers repo once its ``model_index.json`` is there."""
    return (folder / "model_index.json").is_file() or (folder / ".built").is_file()


def cached_snapshot(card: ModelCard) -> Path | None:
    """A complete copy already in the standard Hugging Face cache, found without any network call."""
    if not card.huggingface:
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(card.huggingface, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if is_complete(folder) else None


def ensure_model(card: ModelCard, settings: Settings) -> Path:
    """The local folder holding ``card``'s weights, building or downloading them when needed."""
    if card.builder:
        return tiny.build(card.builder, model_dir(card, settings))
    local = model_dir(card, settings)
    if is_complete(local):
        return local
    cached = cached_snapshot(card)
    if cached is not None:
        return cached
    if settings.offline:
        raise ModelMissingError(
            f"{card.name} is not downloaded and the app is offline. Place the files of "
            f"{card.huggingface or card.modelscope} in {local}"
        )
    from huggingface_hub import snapshot_download

    snapshot_download(card.huggingface, local_dir=local, allow_patterns=list(card.allow_patterns) or None)
    return local
