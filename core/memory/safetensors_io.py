"""safetensors files read and written by hand: headers, ``readinto`` reads, zero-copy maps, streamed writes.

The low-RAM loader needs what ``safetensors.torch`` does not offer: a tensor's bytes copied into a
buffer of our choosing, a whole file mapped with every tensor a view of the mapping (``torch``'s own
``UntypedStorage.from_file``: the same in every safetensors version), and a file written one tensor at
a time with its header first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
TENSOR_ALIGN = 64
METADATA = "__metadata__"
PADDING = "__padding__."


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files of one model folder (sharded through an index, or one file)."""
    folder = Path(folder)
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return files


class Shard:
    """One safetensors file's header, and ``read_into`` to copy a tensor's bytes with ``readinto`` (no
    mapping left behind in RSS)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as file:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(size))
        self.metadata: dict[str, str] = header.pop(METADATA, None) or {}
        self.data_start = 8 + size
        self.entries: dict[str, Any] = header

    def dtype(self, key: str) -> torch.dtype:
        return SAFETENSORS_DTYPES[self.entries[key]["dtype"]]

    def shape(self, key: str) -> torch.Size:
        return torch.Size(self.entries[key]["shape"])

    @property
    def data_bytes(self) -> int:
        return max((e["data_offsets"][1] for e in self.entries.values()), default=0)

    def read_into(self, file: Any, key: str, out: torch.Tensor, skip: int = 0) -> None:
        """Fill ``out`` (contiguous, the tensor's file dtype) with the tensor's bytes from ``skip`` on."""
        start, end = self.entries[key]["data_offsets"]
        nbytes = out.numel() * out.element_size()
        if skip + nbytes > end - start:
            raise ValueError(f"{self.path.name}: {key!r} has {end - start} bytes, {skip + nbytes} asked for")
        file.seek(self.data_start + start + skip)
        view = memoryview(out.reshape(-1).view(torch.uint8).numpy()) if nbytes else memoryview(b"")
        if file.readinto(view) != nbytes:
            raise ValueError(f"{self.path.name}: {key!r} is cut short")


def map_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``path`` as a view of one private read-only mapping of the file (nothing copied:
    the pages are page cache, read in when first touched and dropped again under memory pressure)."""
    shard = Shard(path)
    size = Path(path).stat().st_size
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    tensors = {}
    for key, entry in shard.entries.items():
        if key.startswith(PADDING):
            continue
        start, end = entry["data_offsets"]
        flat = torch.empty(0, dtype=torch.uint8).set_(storage, shard.data_start + start, (end - start,))
        tensors[key] = flat.view(shard.dtype(key)).view(shard.shape(key))
    return tensors


def plan_header(
    layout: Iterable[tuple[str, torch.dtype, torch.Size]],
    metadata: dict[str, str],
    residues: dict[str, int] | None = None,
) -> tuple[bytes, list[int]]:
    """The file's first bytes for tensors stored in ``layout``'s order, and the padding bytes to write
    before each. Every tensor starts 64-byte aligned, or at ``residues[key]`` past a 64-byte boundary
    (where it sat in its source file): CPU kernels' results can depend on their operands' alignment, so
    a mapped copy computes exactly as its source did. Gaps are uint8 ``__padding__.N`` tensors
    (safetensors allows no holes), and the header is padded so the data starts 64-byte aligned."""
    residues = residues or {}
    header: dict[str, Any] = {METADATA: metadata}
    pads, offset = [], 0
    for key, dtype, shape in layout:
        pad = (residues.get(key, 0) - offset) % TENSOR_ALIGN
        if pad:
            header[f"{PADDING}{len(header)}"] = _entry("U8", [pad], offset, pad)
        offset += pad
        nbytes = shape.numel() * dtype.itemsize
        header[key] = _entry(DTYPE_NAMES[dtype], list(shape), offset, nbytes)
        pads.append(pad)
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % TENSOR_ALIGN)
    return len(text).to_bytes(8, "little") + text, pads


def _entry(dtype_name: str, shape: list[int], start: int, nbytes: int) -> dict[str, Any]:
    return {"dtype": dtype_name, "shape": shape, "data_offsets": [start, start + nbytes]}


def write_tensor(file: BinaryIO, tensor: torch.Tensor) -> None:
    """Append ``tensor``'s bytes (contiguous, CPU) to ``file``."""
    if tensor.numel():
        file.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def commit_file(temporary: Path, final: Path, file: BinaryIO) -> None:
    """Flush ``file`` (open on ``temporary``) to disk and move it to ``final`` in one step."""
    file.flush()
    os.fsync(file.fileno())
    os.replace(temporary, final)
