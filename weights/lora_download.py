"""Fetch one LoRA file, from a Hub repo or a URL, into the loras folder: resumable and verified like the
model downloads (``weights.download.RepoFetch``: partial file named by its hash, verified before it is
moved in place).

A URL is verified by the SHA-256 the caller gives, else the one its server publishes (the Hub's
``X-Linked-Etag`` / an ETag of 64 hex digits); a URL with neither is refused, so nothing unverified lands
in the folder.
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path

from core.validation import ConfigError
from weights.download import RepoFetch, exclusive
from weights.progress import DownloadProgress, ProgressMeter
from weights.sources import HuggingFaceSource, Listing, RemoteFile, Source, SourceError, first_line

STAGING = ".downloads"
SHA256 = re.compile(r"[0-9a-f]{64}")
BLOCK = 1024 * 1024
TIMEOUT_S = 30


class UrlSource:
    """A plain HTTP(S) file, resumed with Range requests."""

    name = "url"

    def __init__(self, url: str, file_name: str, sha256: str | None = None) -> None:
        self.repo_id = url
        self.file_name = file_name
        self.sha256 = sha256

    def head(self) -> Message:
        """The headers the server answers a HEAD request with."""
        try:
            request = urllib.request.Request(self.repo_id, method="HEAD")
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.headers
        except Exception as exc:
            raise SourceError(f"{self.repo_id}: {first_line(exc)}") from exc

    def list_files(self, patterns: tuple[str, ...]) -> Listing:
        headers = self.head()
        size = int(headers.get("X-Linked-Size") or headers.get("Content-Length") or 0)
        published = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip('"W/ ').lower()
        digest = self.sha256 or (published if SHA256.fullmatch(published) else None)
        if digest is None:
            raise ConfigError(
                f"{self.repo_id} publishes no SHA-256 to verify it against: add the file's sha256 to the "
                "LoRA entry, or download it yourself into the loras folder"
            )
        return Listing(revision="url", files=(RemoteFile(self.file_name, size, sha256=digest),))

    def fetch(self, listing: Listing, file: RemoteFile, part: Path, meter: ProgressMeter) -> None:
        resume = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(
            self.repo_id, headers={"Range": f"bytes={resume}-"} if resume else {}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, part.open("ab") as out:
                if resume and response.status != 206:
                    out.truncate(0)
                    meter.rewind(resume)
                while block := response.read(BLOCK):
                    out.write(block)
                    meter.advance(len(block))
        except ConfigError:
            raise
        except OSError as exc:
            raise SourceError(f"{self.repo_id}: {first_line(exc)}") from exc


def download_lora(
    loras_dir: Path,
    file_name: str,
    *,
    repo: str | None = None,
    repo_file: str | None = None,
    url: str | None = None,
    sha256: str | None = None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """``loras_dir/file_name``, fetched first from ``repo`` (file ``repo_file``) or ``url`` when absent."""
    loras_dir = Path(loras_dir)
    final = loras_dir / file_name
    if final.is_file():
        return final
    if (repo is None) == (url is None):
        raise ConfigError("a LoRA download needs either a Hub repo and file name, or a URL")
    source: Source = HuggingFaceSource(repo) if repo else UrlSource(url or "", file_name, sha256)
    return fetch_file(
        loras_dir,
        file_name,
        source,
        repo_file if repo else file_name,
        on_progress=on_progress,
        should_cancel=should_cancel,
    )


def fetch_file(
    folder: Path,
    file_name: str,
    source: Source,
    pattern: str,
    *,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """``folder/file_name``: ``source``'s file ``pattern`` fetched into a staging folder (one download at a
    time, resumable, verified by ``RepoFetch``) and moved in place; kept when it is there already."""
    final = Path(folder) / file_name
    staging = Path(folder) / STAGING / re.sub(r"[^A-Za-z0-9_.-]", "_", file_name)
    staging.mkdir(parents=True, exist_ok=True)
    with exclusive(staging, should_cancel):
        if final.is_file():
            return final
        listing = source.list_files((pattern,))
        files = tuple(f for f in listing.files if f.path == pattern)
        if not files:
            raise ConfigError(f"{source.repo_id} has no file {pattern!r}; check the repo and file name")
        listing = Listing(listing.revision, files)
        RepoFetch(
            source, listing, staging, {"on_progress": on_progress, "should_cancel": should_cancel}
        ).run()
        os.replace(staging / pattern, final)
    return final
