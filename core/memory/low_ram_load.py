"""Load a model's weights one tensor at a time, each straight into the form its memory level keeps.

``from_pretrained`` puts the whole model in host RAM in the load dtype before offloading or fp8 casting
can start (14B: 26.6 GiB of bf16). Here the model is built on the meta device, its final dtypes are
planned first (diffusers' ``enable_layerwise_casting`` is applied to the empty model, so fp8 layers are
fp8 before any weight exists), then every safetensors tensor is read from its shard (``readinto``
through one 64 MiB staging buffer), converted and set. The host never holds more than the final
footprint plus that buffer.

Where a tensor's file dtype is already its final dtype and it needs no pinning, it stays a view of
the mapped file: clean page-cache pages the kernel can drop under pressure, not a private copy. For
group offload with CUDA streams, tensors go into large pinned buffers (``PinnedArena``), so diffusers'
offload hook finds them pinned and does not copy them again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from accelerate import init_empty_weights
from safetensors import safe_open

from core.memory.apply import FP8_STORAGE_DTYPE
from core.memory.levels import FP8_STORAGE, GROUP_OFFLOAD

log = logging.getLogger(__name__)

ARENA_CHUNK_BYTES = 2**30
ALIGN = 512
STAGING_BYTES = 64 * 2**20
TRANSFORMER_NAMES = ("transformer", "transformer_2")
TEXT_ENCODER = "text_encoder"


class PinnedArena:
    """Hands out tensors carved from 1 GiB pinned buffers, first fit.

    torch's pinned-memory allocator rounds every request up to a power of two (a 14B feed-forward
    weight of 135 MiB takes 256 MiB); power-of-two chunks shared by many tensors waste ~1% instead.
    """

    def __init__(self, chunk_bytes: int = ARENA_CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self._chunks: list[list[Any]] = []  # [buffer, bytes used]

    def empty(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        nbytes = shape.numel() * dtype.itemsize
        size = -(-nbytes // ALIGN) * ALIGN
        chunk = next((c for c in self._chunks if c[0].numel() - c[1] >= size), None)
        if chunk is None:
            chunk_size = max(self.chunk_bytes, 1 << (size - 1).bit_length())
            chunk = [torch.empty(chunk_size, dtype=torch.uint8, pin_memory=True), 0]
            self._chunks.append(chunk)
        start = chunk[1]
        chunk[1] += size
        return chunk[0][start : start + nbytes].view(dtype).view(shape)

    @property
    def reserved_bytes(self) -> int:
        return sum(c[0].numel() for c in self._chunks)


@dataclass(frozen=True)
class LoadReport:
    """What a low-RAM load did: tensors read, how many stayed mapped, and host bytes kept."""

    tensors: int
    mapped: int
    host_bytes: int


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


def plan_dtypes(model: torch.nn.Module, compute_dtype: torch.dtype, level: int) -> None:
    """Give the empty (meta) model the dtypes it will have at ``level``, as ``from_pretrained`` with
    ``torch_dtype=compute_dtype`` and then ``enable_layerwise_casting`` (level 5+) would: diffusers keeps
    a model's ``_keep_in_fp32_modules`` in float32 always, transformers only under float16."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if not isinstance(model, diffusers.ModelMixin) and compute_dtype != torch.float16:
        keep = set()
    for name, param in model.named_parameters():
        wide = bool(keep & set(name.split(".")))
        param.data = param.data.to(torch.float32 if wide else compute_dtype)
    if level >= FP8_STORAGE:
        model.enable_layerwise_casting(storage_dtype=FP8_STORAGE_DTYPE, compute_dtype=compute_dtype)


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


class Shard:
    """One safetensors file's header, and ``read_into`` to copy a tensor's bytes with ``readinto`` (no
    mapping left behind in RSS). Views of the mapped file come from ``safetensors.safe_open``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as file:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(size))
        header.pop("__metadata__", None)
        self.data_start = 8 + size
        self.entries = header

    def dtype(self, key: str) -> torch.dtype:
        return SAFETENSORS_DTYPES[self.entries[key]["dtype"]]

    def shape(self, key: str) -> torch.Size:
        return torch.Size(self.entries[key]["shape"])

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


def _final_tensor(shard: Shard, file: Any, handle: Any, key: str, like: torch.Tensor, arena, staging):
    """The checkpoint tensor ``key`` in ``like``'s dtype and shape, and whether it stayed mapped.

    A conversion reads through ``staging``, one byte buffer (at most 64 MiB) reused for every tensor
    and slice: per-tensor temporaries would leave holes in the heap that the kept tensors cannot fill.
    """
    stored, shape = shard.dtype(key), shard.shape(key)
    if shape != like.shape:
        raise ValueError(f"{key}: checkpoint shape {tuple(shape)} != model shape {tuple(like.shape)}")
    if arena is None and stored == like.dtype:
        return handle.get_tensor(key), True
    if stored == like.dtype:
        target = arena.empty(shape, stored)
        shard.read_into(file, key, target)
        return target, False
    target = torch.empty(shape, dtype=like.dtype) if arena is None else arena.empty(shape, like.dtype)
    flat, step = target.view(-1), staging.numel() // stored.itemsize
    for first in range(0, flat.numel(), step):
        part = flat[first : first + step]
        source = staging[: part.numel() * stored.itemsize].view(stored)
        shard.read_into(file, key, source, skip=first * stored.itemsize)
        part.copy_(source)
    return target, False


def stream_weights(
    model: torch.nn.Module, files: list[Path], arena: PinnedArena | None = None
) -> LoadReport:
    """Set every parameter of the empty ``model`` from ``files``, one tensor at a time, in its planned dtype.

    A tensor whose file dtype is its final dtype (and needs no pinning) stays a view of the mapped file;
    any other is read into a temporary of one tensor and converted. Raises ``KeyError`` for checkpoint
    tensors the model lacks and ``ValueError`` for parameters no file provided (after tying shared
    weights, as transformers models declare them).
    """
    slots = dict(model.named_parameters(remove_duplicate=False))
    slots.update(model.named_buffers(remove_duplicate=False))
    count = mapped = 0
    shards = [Shard(path) for path in files]
    sizes = [e["data_offsets"][1] - e["data_offsets"][0] for s in shards for e in s.entries.values()]
    staging = torch.empty(min(max(sizes, default=0), STAGING_BYTES), dtype=torch.uint8)
    for path, shard in zip(files, shards, strict=True):
        with path.open("rb", buffering=0) as file, safe_open(str(path), framework="pt") as handle:
            for key in shard.entries:
                if key not in slots:
                    raise KeyError(f"{path.name}: tensor {key!r} has no place in {type(model).__name__}")
                value, was_mapped = _final_tensor(shard, file, handle, key, slots[key], arena, staging)
                _set_tensor(model, key, value)
                count += 1
                mapped += was_mapped
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"{type(model).__name__}: no weights in the checkpoint for {missing[:5]}")
    host = sum(t.numel() * t.element_size() for t in _unique_tensors(model))
    return LoadReport(count, mapped, host)


def _set_tensor(model: torch.nn.Module, key: str, value: torch.Tensor) -> None:
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    if name in module._parameters:
        module._parameters[name] = torch.nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[name] = value


def _unique_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    seen, out = set(), []
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out.append(tensor)
    return out


def load_model_low_ram(
    model_class: type, folder: Path, compute_dtype: torch.dtype, level: int, pin: bool = False
) -> tuple[torch.nn.Module, LoadReport]:
    """``model_class`` (a diffusers or transformers model) from ``folder``, built empty and filled
    tensor by tensor in its level's dtypes; pinned host memory when ``pin`` (group offload on CUDA)."""
    folder = Path(folder)
    if hasattr(model_class, "load_config"):
        with init_empty_weights():
            model = model_class.from_config(model_class.load_config(folder))
    else:
        config = model_class.config_class.from_pretrained(folder)
        with init_empty_weights():
            model = model_class(config)
    plan_dtypes(model, compute_dtype, level)
    arena = PinnedArena() if pin else None
    report = stream_weights(model, shard_files(folder), arena)
    if arena is not None:
        pinned, kept = arena.reserved_bytes / 2**30, report.host_bytes / 2**30
        log.info("pinned %.2f GiB for %.2f GiB of weights", pinned, kept)
    return model.eval(), report


def _component_class(index: dict[str, Any], name: str) -> type | None:
    entry = index.get(name)
    if not entry or entry[1] is None:
        return None
    library, class_name = entry
    if library == "transformers":
        import transformers

        return getattr(transformers, class_name)
    return getattr(diffusers, class_name)


def stored_dtype(folder: Path) -> torch.dtype:
    """The floating dtype most of a model folder's weights are stored in."""
    sizes: dict[torch.dtype, int] = {}
    for path in shard_files(folder):
        shard = Shard(path)
        for key, entry in shard.entries.items():
            dtype = shard.dtype(key)
            if dtype.is_floating_point:
                sizes[dtype] = sizes.get(dtype, 0) + entry["data_offsets"][1] - entry["data_offsets"][0]
    return max(sizes, key=sizes.get)


def load_components_low_ram(
    folder: Path, level: int, compute_dtype: torch.dtype, device: torch.device
) -> dict[str, torch.nn.Module]:
    """Components loaded tensor by tensor for ``level`` (4+), to pass to ``from_pretrained``.

    The DiT(s) go straight into their final form: pinned host memory for group offload on CUDA, fp8 at
    level 5. Wan2.2 A14B's two experts (``transformer``, ``transformer_2``) load one after the other.
    The text encoder, which runs on the CPU from level 2, stays mapped from its files in their stored
    dtype (a float32 checkpoint encodes in float32): page cache the kernel can drop, not a private copy.
    """
    if level < GROUP_OFFLOAD:
        return {}
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    pin = torch.device(device).type == "cuda" and torch.cuda.is_available()
    loaded = {}
    for name in TRANSFORMER_NAMES:
        model_class = _component_class(index, name)
        if model_class is None:
            continue
        loaded[name], report = load_model_low_ram(model_class, folder / name, compute_dtype, level, pin)
        gib = report.host_bytes / 2**30
        log.info("%s: %d tensors streamed, %.2f GiB on the host", name, report.tensors, gib)
    encoder_class = _component_class(index, TEXT_ENCODER)
    if encoder_class is not None:
        encoder_folder = folder / TEXT_ENCODER
        dtype = stored_dtype(encoder_folder)
        loaded[TEXT_ENCODER], report = load_model_low_ram(encoder_class, encoder_folder, dtype, 0)
        log.info("text encoder: %d of %d tensors mapped from its files", report.mapped, report.tensors)
    return loaded
