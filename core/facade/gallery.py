"""History as a gallery: a thumbnail and a caption per result, in the chosen order, with each result's
size on disk and the total."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.history import list_results, sort_results
from core.space import SpaceInfo, for_display
from core.thumbnails import thumbnail


def human_size(size: int) -> str:
    """Bytes as ``123 KB`` / ``4.5 MB`` / ``1.2 GB``."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def gallery(
    outputs: Path, space: SpaceInfo, filters: tuple[Any, Any, Any], order: str
) -> tuple[list[tuple[str, str]], list[str], str]:
    """The filtered results as (thumbnail or video, caption) items in ``order``, their paths as the table
    shows them, and a line with the count and the total size on disk."""
    entries = sort_results(list_results(outputs, *(f or None for f in filters)), order or "newest")
    items, paths, total = [], [], 0
    for entry in entries:
        size = entry.size_bytes
        total += size
        picture = thumbnail(outputs, entry.path) or entry.path
        prompt = entry.prompt if len(entry.prompt) <= 60 else entry.prompt[:59] + "…"
        items.append((str(picture), f"{entry.model} · {prompt} · {human_size(size)}"))
        paths.append(str(for_display(str(entry.path), space, outputs)))
    return items, paths, f"{len(entries)} result(s) · {human_size(total)} on disk"
