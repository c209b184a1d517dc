"""Write new frames for a finished video: its record and title kept (or the record replaced), its sound
kept, the file replaced atomically."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.audio import remux_with_audio
from core.video_io import METADATA_KEY, VideoWriter

KEPT_METADATA = (METADATA_KEY, "title")
"""The container tags carried over: the app's record and the title."""


def has_audio(path: Path) -> bool:
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def video_metadata(path: Path) -> dict[str, Any]:
    """``path``'s record (parsed) and title, as :class:`core.video_io.VideoWriter` takes them."""
    with av.open(str(path)) as container:
        tags = {key: container.metadata[key] for key in KEPT_METADATA if key in container.metadata}
    if METADATA_KEY in tags:
        with contextlib.suppress(ValueError):
            tags[METADATA_KEY] = json.loads(tags[METADATA_KEY])
    return tags


def rewrite_video(
    source: Path,
    target: Path,
    frames: Iterable[np.ndarray],
    fps: float,
    record: dict[str, Any] | None = None,
) -> bool:
    """Write ``frames`` (batches shaped (T, H, W, 3)) at ``fps`` to ``target`` (which may be ``source``)
    with ``source``'s title and record (``record`` instead when given) and ``source``'s sound under them;
    ``target`` appears only once complete. Returns whether sound was carried over."""
    source, target = Path(source), Path(target)
    metadata = video_metadata(source) | ({METADATA_KEY: record} if record is not None else {})
    temp = target.with_name(f".{target.stem}.rewrite{target.suffix}")
    try:
        with VideoWriter(temp, fps, metadata) as writer:
            for batch in frames:
                writer.write(batch)
        sound = has_audio(source) and remux_with_audio(temp, source)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return sound
