"""A preview decoder's file on this machine (``<models-dir>/preview-decoders/``): placed there by hand, or
downloaded from the URL its entry gives (pinned to a commit) and verified by its git blob hash at that
commit before it is moved in place (``weights.lora_download.fetch_file``). An entry without a URL is used only
when its file is there."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from weights.lora_download import UrlSource, fetch_file
from weights.preview_decoder import PreviewDecoder
from weights.sources import Listing, RemoteFile, SourceError
from weights.store import is_offline

FOLDER = "preview-decoders"
"""The decoders' folder inside ``--models-dir``."""


class GitBlobUrl(UrlSource):
    """A URL whose file is verified by its git blob hash (its size from the server)."""

    def __init__(self, url: str, file_name: str, git_sha1: str) -> None:
        super().__init__(url, file_name)
        self.git_sha1 = git_sha1

    def list_files(self, patterns: tuple[str, ...]) -> Listing:
        size = int(self.head().get("Content-Length") or 0)
        if not size:
            raise SourceError(f"{self.repo_id}: the server gives no file size")
        return Listing(revision="url", files=(RemoteFile(self.file_name, size, git_sha1=self.git_sha1),))


def decoder_path(decoder: PreviewDecoder, settings: Settings) -> Path:
    """Where ``decoder``'s file lives (present or not)."""
    return Path(settings.models_dir) / FOLDER / decoder.file


def ensure_preview_decoder(decoder: PreviewDecoder, settings: Settings) -> Path | None:
    """``decoder``'s file: found, or downloaded when it has a URL and the app is not offline; else None.
    Raises ``SourceError`` / ``ConfigError`` when a download fails."""
    final = decoder_path(decoder, settings)
    if final.is_file():
        return final
    if not decoder.url or is_offline(settings):
        return None
    return fetch_file(
        final.parent, decoder.file, GitBlobUrl(decoder.url, decoder.file, decoder.git_sha1), decoder.file
    )
