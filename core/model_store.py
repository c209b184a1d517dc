"""A card's weights on this machine for core's jobs: ``weights.store.ensure_model`` with core's tiny-model
builders, so that ``weights`` builds nothing of core itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core import tiny
from core.settings import Settings
from weights import store
from weights.progress import DownloadProgress
from weights.registry import ModelCard


def ensure_model(
    card: ModelCard,
    settings: Settings,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """The local folder holding ``card``'s weights: built (tiny test models), found or downloaded."""
    return store.ensure_model(card, settings, on_progress, should_cancel, build=tiny.build)
