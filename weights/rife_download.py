"""RIFE's weights on this machine (``presets/rife.yaml``): ``<models-dir>/rife/flownet.pkl`` placed by
hand, else the authors' release zip, fetched once from their Hub repo and verified (``download_lora``'s
resumable, hash-checked Hub fetch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from core.settings import Settings
from core.validation import ConfigError, from_mapping
from weights.lora_download import download_lora
from weights.progress import DownloadProgress
from weights.store import is_offline

FACTS_FILE = Path(__file__).resolve().parent.parent / "presets" / "rife.yaml"
FOLDER = "rife"


@dataclass(frozen=True)
class RifeRelease:
    """The Hub ``repo`` and ``file`` (a zip) holding ``member`` (flownet.pkl) of RIFE ``version``."""

    repo: str
    file: str
    member: str
    version: str
    size_mb: float


@lru_cache(maxsize=1)
def rife_release(path: Path = FACTS_FILE) -> RifeRelease:
    return from_mapping(RifeRelease, yaml.safe_load(Path(path).read_text(encoding="utf-8")), where=path.name)


def ensure_rife_weights(
    settings: Settings,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """``flownet.pkl`` placed by hand, else the release zip (fetched when missing and not offline)."""
    release = rife_release()
    folder = Path(settings.models_dir) / FOLDER
    by_hand = folder / release.member
    if by_hand.is_file():
        return by_hand
    if not (folder / release.file).is_file() and is_offline(settings):
        raise ConfigError(
            f"RIFE's weights are not downloaded and the app is offline: put {release.member} (RIFE "
            f"{release.version}, from {release.file} of the Hub repo {release.repo}) in {folder}, or "
            "choose interpolate 'flow' or 'blend'"
        )
    return download_lora(
        folder,
        release.file,
        repo=release.repo,
        repo_file=release.file,
        on_progress=on_progress,
        should_cancel=should_cancel,
    )
