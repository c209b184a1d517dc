"""Download a card's repo into a folder: plan, disk check, resumable transfer, verification, ready marker.

Layout of a model folder while it downloads::

    <folder>/<repo files>                 moved here one by one, only after their hash matched
    <folder>/.download/<file>.<hash>.part  bytes received so far (resumed by the next run)
    <folder>/.download/verified.json       files already verified, so a resumed run does not re-hash them
    <folder>/.ready                        written last, after every file verified; no marker = not ready
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.cancel import JobCancelledError
from core.validation import ConfigError
from weights.failure import download_failure_message
from weights.progress import DownloadProgress, ProgressMeter, human_bytes
from weights.registry import ModelCard
from weights.sources import Listing, RemoteFile, Source, SourceError, sources_for

READY_MARKER = ".ready"
WORK_DIR = ".download"
PLAN_FILE = "plan.json"
VERIFIED_FILE = "verified.json"
DISK_MARGIN_BYTES = 256 * 1024 * 1024
HASH_BLOCK = 4 * 1024 * 1024


class NotEnoughDiskError(ConfigError):
    """The download would not fit on the disk; raised before any byte is fetched."""


class DownloadError(RuntimeError):
    """Every hub failed; the message lists why, per hub."""


def free_disk_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def file_digest(path: Path, algorithm: str, poll: Callable[[], None] | None = None) -> str:
    """``sha256`` of the file, or ``sha1`` the way git hashes a blob (``blob <size>\\0`` + content)."""
    digest = hashlib.new(algorithm)
    if algorithm == "sha1":
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            if poll is not None:
                poll()
    return digest.hexdigest()


def matches(path: Path, file: RemoteFile, poll: Callable[[], None] | None = None) -> bool:
    """True when ``path`` has the size and the hash the hub published for ``file``."""
    if not path.is_file() or path.stat().st_size != file.size:
        return False
    algorithm, expected = file.digest.split(":", 1)
    return file_digest(path, algorithm, poll) == expected


def part_path(folder: Path, file: RemoteFile) -> Path:
    """The partial file for ``file``; its name carries the expected hash so a changed file starts over."""
    return folder / WORK_DIR / f"{file.path}.{file.digest.split(':', 1)[1][:16]}.part"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_plan(folder: Path) -> dict:
    """The file list of the last download attempt into ``folder`` (empty when none was made)."""
    return _read_json(Path(folder) / WORK_DIR / PLAN_FILE)


class RepoFetch:
    """Fetches one listing from one source into ``folder``, resuming and verifying file by file."""

    def __init__(self, source: Source, listing: Listing, folder: Path, meter_args: dict) -> None:
        self.source, self.listing, self.folder = source, listing, Path(folder)
        self.work = self.folder / WORK_DIR
        self.verified = _read_json(self.work / VERIFIED_FILE)
        self.meter_args = meter_args

    def already_verified(self, file: RemoteFile) -> bool:
        final = self.folder / file.path
        if not final.is_file() or final.stat().st_size != file.size:
            return False
        if self.verified.get(file.path) == file.digest:
            return True
        if matches(final, file):
            self.remember(file)
            return True
        return False

    def remember(self, file: RemoteFile) -> None:
        self.verified[file.path] = file.digest
        _write_json(self.work / VERIFIED_FILE, self.verified)

    def bytes_on_disk(self, file: RemoteFile) -> int:
        part = part_path(self.folder, file)
        return min(part.stat().st_size, file.size) if part.is_file() else 0

    def check_disk(self, needed: int) -> None:
        free = free_disk_bytes(self.folder)
        if needed + DISK_MARGIN_BYTES > free:
            raise NotEnoughDiskError(
                f"Not enough disk space for {self.source.repo_id}: {human_bytes(needed)} still to download "
                f"(plus {human_bytes(DISK_MARGIN_BYTES)} headroom) but only {human_bytes(free)} free at "
                f"{self.folder}. Free some space or pick another --models-dir."
            )

    def run(self) -> None:
        files = self.listing.files
        self.work.mkdir(parents=True, exist_ok=True)
        done = {f.path for f in files if self.already_verified(f)}
        have = sum(f.size if f.path in done else self.bytes_on_disk(f) for f in files)
        total = sum(f.size for f in files)
        self.check_disk(total - have)
        _write_json(
            self.work / PLAN_FILE,
            {
                "source": self.source.name,
                "repo": self.source.repo_id,
                "revision": self.listing.revision,
                "files": {f.path: {"size": f.size, "hash": f.digest} for f in files},
            },
        )
        meter = ProgressMeter(total, len(files), **self.meter_args)
        for index, file in enumerate(files, 1):
            meter.check_cancelled()
            if file.path in done:
                meter.start_file(file.path, index, self.source.name, stage="verified")
                meter.skip(file.size)
                continue
            self.fetch_verified(file, index, meter)
        meter.start_file("", len(files), self.source.name, stage="ready")

    def fetch_verified(self, file: RemoteFile, index: int, meter: ProgressMeter) -> None:
        """Fetch (resuming) and verify one file; on a hash mismatch drop the bytes and fetch once more."""
        part = part_path(self.folder, file)
        part.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(2):
            if part.is_file() and part.stat().st_size > file.size:
                part.unlink()
            meter.start_file(file.path, index, self.source.name)
            meter.skip(self.bytes_on_disk(file))
            self.source.fetch(self.listing, file, part, meter)
            meter.start_file(file.path, index, self.source.name, stage="verifying")
            if matches(part, file, poll=meter.check_cancelled):
                final = self.folder / file.path
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, final)
                self.remember(file)
                return
            meter.rewind(part.stat().st_size if part.is_file() else 0)
            part.unlink(missing_ok=True)
        raise SourceError(
            f"{self.source.name} ({self.source.repo_id}) {file.path}: the data received twice does not match "
            f"the published {file.digest.split(':')[0]} hash"
        )


def mark_ready(folder: Path, source: Source, listing: Listing) -> None:
    """Write the ready marker (after every file verified) and drop the download work folder."""
    _write_json(
        Path(folder) / READY_MARKER,
        {
            "source": source.name,
            "repo": source.repo_id,
            "revision": listing.revision,
            "files": {f.path: f.digest for f in listing.files},
        },
    )
    shutil.rmtree(Path(folder) / WORK_DIR, ignore_errors=True)


@contextmanager
def exclusive(folder: Path, should_cancel: Callable[[], bool] | None) -> Iterator[None]:
    """Hold the folder's lock (another thread or process may be downloading the same model); cancel works
    while waiting."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder.parent / f".{folder.name}.lock"))
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            if should_cancel is not None and should_cancel():
                raise JobCancelledError("download cancelled") from None
    try:
        yield
    finally:
        lock.release()


def download_model(
    card: ModelCard,
    folder: Path,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """Download ``card``'s repo into ``folder`` from its preferred hub, falling back to the other one.

    Raises :class:`NotEnoughDiskError` before fetching when it will not fit, ``JobCancelledError`` when
    ``should_cancel()`` turns true (what arrived is kept and resumed next time), and :class:`DownloadError`
    naming every hub's failure when no hub could deliver.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(folder, should_cancel):
        if (folder / READY_MARKER).is_file():
            return folder
        errors: list[BaseException] = []
        for source in sources_for(card.huggingface, card.modelscope, card.prefer):
            try:
                listing = source.list_files(card.allow_patterns)
                if not listing.files:
                    patterns = list(card.allow_patterns)
                    raise SourceError(f"{source.name} ({source.repo_id}): no files match {patterns}")
                callbacks = {"on_progress": on_progress, "should_cancel": should_cancel}
                RepoFetch(source, listing, folder, callbacks).run()
            except SourceError as exc:
                errors.append(exc)
                continue
            mark_ready(folder, source, listing)
            return folder
    raise DownloadError(download_failure_message(card, folder, errors))
