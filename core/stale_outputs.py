"""Temporary files a killed app left in the outputs folder, dealt with at start.

Videos are written to hidden ``.<name>.part.mp4`` files (``core.video_io.temp_path_for``), sidecars and
summaries to ``.<name>.part`` files; a crash (kill -9, power loss) leaves them behind. At start the app
takes a shared lock on ``outputs/.studio.lock`` that every running app holds (``flock``: the kernel
drops it when a process dies, however it dies). Only an app that finds no other holder cleans: a video
temp with decodable frames (the upscale writes fragmented mp4, so what was done survives) becomes
``<name>_partial.mp4`` with a sidecar when its embedded record allows; every other temp file goes.
Without ``flock`` (Windows) only temp files untouched for a day are handled.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import IO, Any

import av

from core.outputs import sidecar_path, write_json_atomic
from core.validation import ConfigError
from core.video_input import iter_upright, stream_info
from core.video_io import METADATA_KEY, VideoWriter, partial_path_for

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
LOCK_NAME = ".studio.lock"
STALE_AFTER_S = 86400.0
"""Without a lock to ask, a temp file this old is taken as left by a dead process."""
VIDEO_TEMP_SUFFIX = ".part.mp4"


def claim_outputs(outputs_dir: Path) -> tuple[IO[bytes] | None, bool]:
    """Hold ``outputs_dir``'s shared lock for this process's life: (the open lock file to keep, whether
    no other live app uses the folder). Keep the handle referenced; closing it releases the lock."""
    outputs_dir = Path(outputs_dir)
    outputs_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return None, False
    handle = (outputs_dir / LOCK_NAME).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except OSError:
        alone = False
    fcntl.flock(handle, fcntl.LOCK_SH)  # from exclusive: a downgrade; else wait for the other's share
    return handle, alone


def temp_files(outputs_dir: Path) -> list[Path]:
    """Hidden ``.part`` files under ``outputs_dir`` (any depth)."""
    return [
        path
        for path in Path(outputs_dir).rglob(".*")
        if path.is_file()
        and path.name != LOCK_NAME
        and (".part." in path.name or path.name.endswith(".part"))
    ]


def clean_stale(outputs_dir: Path, alone: bool, now: float | None = None) -> list[Path]:
    """Recover or remove the temp files left by dead processes (all when ``alone``, else only those a
    day old); returns the partial videos recovered."""
    now = time.time() if now is None else now
    recovered = []
    for temp in temp_files(outputs_dir):
        try:
            if not alone and now - temp.stat().st_mtime < STALE_AFTER_S:
                continue
            kept = recover_video(temp) if is_video_temp(temp) else None
            temp.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not clean %s: %s", temp, exc)
            continue
        if kept is not None:
            log.info("kept the frames of an interrupted job as %s", kept)
            recovered.append(kept)
    return recovered


def is_video_temp(path: Path) -> bool:
    """A video's temp file (``.<name>.part.mp4``), not the audio remux's ``.<name>.audio.part.mp4``."""
    return path.name.endswith(VIDEO_TEMP_SUFFIX) and not path.name.endswith(".audio" + VIDEO_TEMP_SUFFIX)


def recover_video(temp: Path) -> Path | None:
    """The decodable frames of ``temp`` as ``<name>_partial.mp4`` (with a sidecar when the file embeds a
    generation record); None when it holds no frame or that name is taken."""
    target = partial_path_for(temp.with_name(temp.name[1 : -len(VIDEO_TEMP_SUFFIX)] + ".mp4"))
    if temp.stat().st_size == 0 or target.exists():
        return None
    try:
        fps = stream_info(temp)[2] or 24.0
        record = embedded_record(temp)
    except (ConfigError, OSError):
        return None
    writer = VideoWriter(target, fps, {"title": target.stem})
    try:
        for frame in iter_upright(temp):
            writer.write(frame[None, : frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
    except ConfigError:
        pass  # the crash cut the last fragment: keep the frames before it
    if writer.frames_written == 0:
        writer.discard()
        return None
    writer.commit()
    if record is not None:
        write_json_atomic(
            sidecar_path(target),
            record
            | {
                "status": "interrupted",
                "partial": True,
                "frames": writer.frames_written,
                "frames_written": writer.frames_written,
                "output": target.name,
                "audio": False,
            },
        )
    return target


def embedded_record(path: Path) -> dict[str, Any] | None:
    """The generation record in ``path``'s metadata when it is one History can list, else None."""
    with_record = probe_metadata(path).get(METADATA_KEY)
    try:
        record = json.loads(with_record) if with_record else None
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "task" in record and "request" in record else None


def probe_metadata(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return dict(container.metadata)
