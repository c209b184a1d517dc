"""Which files a batch row may name: only those uploaded with the batch, or inside the outputs folder or a
folder the user allowed (``--allow-dir``). A prompt list comes from whoever can reach the app, so a row
must never make a job read (and serve from outputs/) any file of the server. Every refusal is the same
message, whether the file exists or not: the answer must not tell what is on the server."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core.validation import ConfigError

FILE_FIELDS = ("video", "image", "end_image")
"""Request fields of a batch row that name a file on the server."""


def refusal(field: str) -> str:
    """The one message for a row's file that is not available to batches."""
    return (
        f"{field}: not a file this batch may use; name a file uploaded with the batch (by its name), one "
        "in the outputs folder, or one in a folder the app was started with --allow-dir"
    )


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def resolve_row_files(
    row: Mapping[str, Any],
    uploads: Iterable[Path],
    outputs_dir: Path,
    allowed: Iterable[Path] = (),
    relative_to: Path | None = None,
) -> dict[str, Any]:
    """``row`` with each file field made the path of an upload it names (by file name), or the resolved
    path of a file inside ``outputs_dir`` or an ``allowed`` folder (relative paths are taken from
    ``relative_to``, default the outputs folder: the command line passes the prompt list's own folder);
    anything else is a ConfigError with :func:`refusal`'s message."""
    by_name = {Path(upload).name: Path(upload) for upload in uploads}
    roots = [Path(os.path.realpath(folder)) for folder in (outputs_dir, *allowed)]
    resolved = dict(row)
    for field in FILE_FIELDS:
        value = row.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            raise ConfigError(refusal(field))
        if value in by_name:
            resolved[field] = str(by_name[value])
            continue
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            candidate = Path(relative_to or outputs_dir) / candidate
        real = Path(os.path.realpath(candidate))  # symlinks and .. resolved before the check
        if not _inside(real, roots):
            raise ConfigError(refusal(field))
        resolved[field] = str(real)
    return resolved
