"""Where weights come from: the Hugging Face Hub and ModelScope, each through its own client library.

A source lists a repo's files (size and the hash the hub publishes) and fetches one file into a partial
file, resuming from whatever that partial file already holds. Verification and the ready marker live in
:mod:`weights.download`; sources only move bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.cancel import JobCancelledError
from weights.progress import ProgressMeter

LIST_TIMEOUT_S = 20
MODELSCOPE_RETRIES = 2


class SourceError(RuntimeError):
    """A hub could not list or serve a repo; the message names the hub and the reason."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo as the hub describes it: exactly one of ``sha256`` / ``git_sha1`` is set."""

    path: str
    size: int
    sha256: str | None = None
    git_sha1: str | None = None

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` for LFS files (and every ModelScope file), ``sha1:<hex>`` for small git files."""
        return f"sha256:{self.sha256}" if self.sha256 else f"sha1:{self.git_sha1}"


@dataclass(frozen=True)
class Listing:
    """The files of a repo at one revision."""

    revision: str
    files: tuple[RemoteFile, ...]


class Source(Protocol):
    name: str
    repo_id: str

    def list_files(self, patterns: tuple[str, ...]) -> Listing: ...

    def fetch(self, listing: Listing, file: RemoteFile, part: Path, meter: ProgressMeter) -> None: ...


def select(paths: list[Any], patterns: tuple[str, ...], key: Any) -> list[Any]:
    """The items whose path matches one of the card's ``allow_patterns`` (all of them when there are none)."""
    from huggingface_hub.utils import filter_repo_objects

    return list(filter_repo_objects(paths, allow_patterns=list(patterns) or None, key=key))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class _MeterBar:
    """Stands in for tqdm inside ``huggingface_hub.http_get``: forwards bytes to the meter (polls cancel)."""

    def __init__(self, meter: ProgressMeter, **_: Any) -> None:
        self.meter = meter

    def update(self, count: int) -> None:
        self.meter.advance(count)

    def __enter__(self) -> _MeterBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class HuggingFaceSource:
    """The Hugging Face Hub, or the mirror named by ``HF_ENDPOINT``; ``HF_TOKEN`` unlocks gated repos."""

    name = "huggingface"

    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id

    @staticmethod
    def endpoint() -> str:
        from huggingface_hub import constants

        return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")

    def list_files(self, patterns: tuple[str, ...]) -> Listing:
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.endpoint()).model_info(
                self.repo_id, files_metadata=True, timeout=LIST_TIMEOUT_S
            )
        except Exception as exc:
            raise SourceError(f"Hugging Face ({self.repo_id}): {first_line(exc)}") from exc
        files = tuple(
            RemoteFile(s.rfilename, s.lfs.size, sha256=s.lfs.sha256)
            if s.lfs
            else RemoteFile(s.rfilename, s.size or 0, git_sha1=s.blob_id)
            for s in select(info.siblings or [], patterns, key=lambda s: s.rfilename)
        )
        return Listing(revision=info.sha or "main", files=files)

    def fetch(self, listing: Listing, file: RemoteFile, part: Path, meter: ProgressMeter) -> None:
        from functools import partial

        from huggingface_hub import hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(self.repo_id, file.path, revision=listing.revision, endpoint=self.endpoint())
        resume = part.stat().st_size if part.exists() else 0
        try:
            with part.open("ab") as out:
                http_get(
                    url,
                    out,
                    resume_size=resume,
                    headers=build_hf_headers(),
                    expected_size=file.size,
                    displayed_filename=file.path,
                    tqdm_class=partial(_MeterBar, meter),
                )
        except JobCancelledError:
            raise
        except Exception as exc:
            raise SourceError(f"Hugging Face ({self.repo_id}) {file.path}: {first_line(exc)}") from exc


class _Cancelled(BaseException):
    """Carries a cancel through ModelScope's catch-all ``except Exception`` retry loop."""


class ModelScopeSource:
    """ModelScope (``MODELSCOPE_ENDPOINT`` picks a mirror or the international site)."""

    name = "modelscope"

    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id

    def _api(self) -> Any:
        from modelscope.hub.api import HubApi

        return HubApi(timeout=LIST_TIMEOUT_S, max_retries=MODELSCOPE_RETRIES)

    def list_files(self, patterns: tuple[str, ...]) -> Listing:
        try:
            entries = self._api().list_repo_files(self.repo_id, "model", revision="master")
        except Exception as exc:
            raise SourceError(f"ModelScope ({self.repo_id}): {first_line(exc)}") from exc
        blobs = [e for e in entries if not e.is_dir]
        files = tuple(
            RemoteFile(e.path, e.size, sha256=e.sha256) for e in select(blobs, patterns, key=lambda e: e.path)
        )
        missing = [f.path for f in files if not f.sha256]
        if missing:
            raise SourceError(f"ModelScope ({self.repo_id}): no sha256 listed for {', '.join(missing)}")
        return Listing(revision="master", files=files)

    def fetch(self, listing: Listing, file: RemoteFile, part: Path, meter: ProgressMeter) -> None:
        from modelscope.hub.callback import ProgressCallback
        from modelscope.hub.file_download import get_file_download_url, http_get_model_file

        api = self._api()
        url = get_file_download_url(self.repo_id, file.path, listing.revision, endpoint=api.endpoint)
        file_base = meter.bytes_done - (part.stat().st_size if part.exists() else 0)

        class MeterCallback(ProgressCallback):
            """ModelScope reports the resumed head of a file once, then each chunk before writing it."""

            def __init__(self, filename: str, file_size: int) -> None:
                super().__init__(filename, file_size)
                self.streaming = False

            def update(self, size: int) -> None:
                on_disk = part.stat().st_size if part.exists() else 0
                if not self.streaming and size == on_disk:
                    return
                self.streaming = True
                meter.resync(file_base + on_disk)
                try:
                    meter.advance(size)
                except JobCancelledError as exc:
                    raise _Cancelled from exc

        try:
            http_get_model_file(
                url,
                str(part.parent),
                part.name,
                file.size,
                cookies=None,
                headers={"user-agent": "video-studio"},
                disable_tqdm=True,
                progress_callbacks=[MeterCallback],
            )
        except _Cancelled as exc:
            raise JobCancelledError("download cancelled") from exc
        except Exception as exc:
            raise SourceError(f"ModelScope ({self.repo_id}) {file.path}: {first_line(exc)}") from exc


def sources_for(repo_hf: str | None, repo_ms: str | None, prefer: str) -> list[Source]:
    """The hubs to try for a card, preferred one first."""
    found: list[Source] = []
    if repo_hf:
        found.append(HuggingFaceSource(repo_hf))
    if repo_ms:
        found.append(ModelScopeSource(repo_ms))
    found.sort(key=lambda s: s.name != prefer)
    return found
