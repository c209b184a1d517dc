"""The fp8 DiT written once to disk and mapped from there, so that its host copy is page cache, not RAM.

At level 5 the DiT's host copy is what diffusers' layerwise casting stores: fp8 weights and the few
params it keeps wide. Held in anonymous memory that is 13.6 GiB for Wan2.1 14B, more than a 16 GB
machine can spare. Written once to ``<models dir>/.fp8-cache/<card id>/<component>-<fingerprint>.safetensors``
(tensor by tensor, atomically) and mapped, the same bytes are clean file pages: the kernel drops them
under memory pressure and reads them again when group offload next copies that block to the GPU.

The fingerprint covers the source shards (name, size, modification time), the model class, the
planned dtypes and this file's format; a cache file is used only when its size and header are
exactly those planned, anything else (partial, corrupt, stale) is written anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
import torch

from core.memory.safetensors_io import commit_file, plan_header, write_tensor

log = logging.getLogger(__name__)

FORMAT = "fp8-cache-1"
SPARE_DISK_BYTES = 2**30
"""RAM that must stay available beside a pinned fp8 DiT (pinned memory cannot be swapped out)."""
PARTIAL = ".partial-"
PARTIAL_GRACE_S = 600
"""A partial file changed this recently may be a write in progress by a process this one cannot see."""

Layout = list[tuple[str, torch.dtype, torch.Size]]
Pieces = Callable[[str], Iterable[torch.Tensor]]


def fingerprint(files: list[Path], model: torch.nn.Module, layout: Layout) -> str:
    """A short hash of the source shards' names, sizes and times, the model class and the planned dtypes."""
    sources = [(Path(f).name, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    planned = [(key, str(dtype), list(shape)) for key, dtype, shape in layout]
    text = json.dumps([FORMAT, type(model).__name__, sources, planned])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_valid(path: Path, header: bytes, data_bytes: int) -> bool:
    """Whether ``path`` is a complete cache file: the planned header, byte for byte, and the planned size."""
    try:
        if path.stat().st_size != len(header) + data_bytes:
            return False
        with path.open("rb") as file:
            return file.read(len(header)) == header
    except OSError:
        return False


def _being_written(path: Path) -> bool:
    """Whether ``path``, a ``<cache file>.partial-<pid>``, may still be written: by a live process (split
    ranks write the same cache at once), or recently (a process elsewhere sharing the models folder)."""
    pid = path.name.rpartition(PARTIAL)[2]
    if pid.isdigit() and psutil.pid_exists(int(pid)):
        return True
    try:
        return time.time() - path.stat().st_mtime < PARTIAL_GRACE_S
    except OSError:
        return False


def _remove_stale(folder: Path, name: str, keep: Path) -> None:
    """Remove ``name``'s cache files other than ``keep``, and the partial files no process still writes."""
    for old in folder.glob(f"{name}-*"):
        if old != keep and not (PARTIAL in old.name and _being_written(old)):
            log.info("removing stale fp8 cache %s", old)
            old.unlink(missing_ok=True)


def write_cache(path: Path, header: bytes, pads: list[int], layout: Layout, pieces_of: Pieces) -> None:
    """Write the cache file: header first, then each tensor as ``pieces_of(key)`` gives it (flat pieces in
    its planned dtype), into a temporary file that replaces ``path`` once complete."""
    temporary = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
    try:
        with temporary.open("wb") as file:
            file.write(header)
            for (key, dtype, shape), pad in zip(layout, pads, strict=True):
                file.write(bytes(pad))
                written = 0
                for piece in pieces_of(key):
                    if piece.dtype != dtype:
                        raise ValueError(f"{key}: got {piece.dtype}, planned {dtype}")
                    write_tensor(file, piece)
                    written += piece.numel()
                if written != shape.numel():
                    raise ValueError(f"{key}: got {written} elements, planned {shape.numel()}")
            commit_file(temporary, path, file)
    finally:
        temporary.unlink(missing_ok=True)


def ensure_cache(
    folder: Path,
    name: str,
    files: list[Path],
    model: torch.nn.Module,
    layout: Layout,
    pieces_of: Pieces,
    residues: dict[str, int] | None = None,
) -> Path | None:
    """The valid cache file for ``model`` (dtypes planned) from ``files``, written first when missing or
    invalid; ``None`` (the caller keeps the weights in RAM) when it cannot be written: no space, no rights.
    ``residues``: where tensors kept in their source dtype sat past a 64-byte boundary (``plan_header``)."""
    header, pads = plan_header(layout, {"format": FORMAT}, residues)
    data_bytes = sum(shape.numel() * dtype.itemsize for _, dtype, shape in layout) + sum(pads)
    path = Path(folder) / f"{name}-{fingerprint(files, model, layout)}.safetensors"
    if is_valid(path, header, data_bytes):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path.parent, name, keep=path)
        free = shutil.disk_usage(path.parent).free
        if free < len(header) + data_bytes + SPARE_DISK_BYTES:
            log.warning(
                "fp8 cache needs %.1f GiB on %s, %.1f GiB free: weights stay in RAM",
                data_bytes / 2**30, path.parent, free / 2**30,
            )  # fmt: skip
            return None
        log.info("writing the fp8 cache %s (%.2f GiB, once)", path, data_bytes / 2**30)
        write_cache(path, header, pads, layout, pieces_of)
    except OSError as error:
        log.warning("could not write the fp8 cache %s (%s): weights stay in RAM", path, error)
        return None
    return path
