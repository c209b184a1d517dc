"""The loras folder: what is in it, a request's entries resolved to files there (fetched first when they
name a Hub file or a URL), and each file's SHA-256 for the record (cached by size and time)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.lora.spec import LORA_SUFFIX, LoraSpec
from core.validation import ConfigError
from weights.download import file_digest
from weights.lora_download import download_lora
from weights.progress import DownloadProgress

HASH_CACHE = ".sha256.json"


@dataclass(frozen=True)
class ResolvedLora:
    """A request's LoRA as a file on disk with its hash."""

    spec: LoraSpec
    path: Path
    sha256: str

    @property
    def slot(self) -> tuple[str, float, str]:
        """What makes this LoRA's effect: its file's content, strength and expert."""
        return (self.sha256, self.spec.strength, self.spec.expert)

    def record(self) -> dict:
        """The record's entry: name, file hash, strength, expert (and where it came from)."""
        return self.spec.to_dict() | {"sha256": self.sha256, "file": self.path.name}


def list_loras(loras_dir: Path) -> list[str]:
    """The LoRA files in ``loras_dir`` (names relative to it), sorted."""
    folder = Path(loras_dir)
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob(f"*{LORA_SUFFIX}")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def file_sha256(path: Path) -> str:
    """``path``'s SHA-256, remembered in the folder's hash cache while its size and mtime stay the same."""
    cache_file = path.parent / HASH_CACHE
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    stat = path.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    entry = cache.get(path.name)
    if entry and entry.get("stamp") == stamp:
        return entry["sha256"]
    digest = file_digest(path, "sha256")
    cache[path.name] = {"stamp": stamp, "sha256": digest}
    tmp = cache_file.with_name(cache_file.name + ".tmp")
    try:
        tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        os.replace(tmp, cache_file)
    except OSError:
        pass
    return digest


def resolve_lora(
    spec: LoraSpec,
    loras_dir: Path,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ResolvedLora:
    """``spec``'s file in ``loras_dir`` (downloaded first when it names a repo or URL), checked against
    the hash a rerun carries."""
    folder = Path(loras_dir)
    path = folder / spec.file_name
    if spec.repo or spec.url:
        path = download_lora(
            folder,
            spec.file_name,
            repo=spec.repo,
            repo_file=spec.name,
            url=spec.url,
            sha256=spec.sha256,
            on_progress=on_progress,
            should_cancel=should_cancel,
        )
    elif not path.is_file():
        known = ", ".join(list_loras(folder)[:20]) or "none"
        raise ConfigError(
            f"LoRA {spec.name!r} is not in the loras folder {folder} (found: {known}); put the .safetensors "
            "file there or give its Hub repo or URL"
        )
    digest = file_sha256(path)
    if spec.sha256 and spec.sha256 != digest:
        raise ConfigError(
            f"LoRA {spec.name}: the file in {folder} is not the one this run used (SHA-256 {digest[:12]}…, "
            f"recorded {spec.sha256[:12]}…); put the original file back or drop the sha256 to use this one"
        )
    return ResolvedLora(spec, path, digest)
