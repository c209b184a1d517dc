"""Load a model's weights one tensor at a time, each straight into the form its memory level keeps.

``from_pretrained`` puts the whole model in host RAM in the load dtype before offloading or fp8 casting
can start (14B: 26.6 GiB of bf16). Here the model is built on the meta device, its final dtypes are
planned first (diffusers' ``enable_layerwise_casting`` is applied to the empty model, so fp8 layers are
fp8 before any weight exists), then every safetensors tensor is read from its shard (``readinto``
through one 64 MiB staging buffer), converted and set. The host never holds more than the final
footprint plus that buffer.

Where a tensor's file dtype is already its final dtype and it needs no pinning, it stays a view of
the mapped file: clean page-cache pages the kernel can drop under pressure, not a private copy. At
level 5 with an fp8 cache folder the whole DiT goes that way: its fp8 form is written once to a cache
file (``fp8_cache.py``) and mapped. Otherwise, for group offload with CUDA streams, tensors go into
large pinned buffers (``PinnedArena``), so diffusers' offload hook finds them pinned and does not copy
them again.
"""

from __future__ import annotations

import json
import logging
import mmap
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from accelerate import init_empty_weights

from core.memory.apply import FP8_STORAGE_DTYPE, MAPPED_FROM
from core.memory.fp8_cache import ensure_cache
from core.memory.levels import FP8_STORAGE, GROUP_OFFLOAD
from core.memory.safetensors_io import TENSOR_ALIGN, Shard, map_safetensors, shard_files

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
    """What a low-RAM load did: tensors read, how many stayed mapped, host bytes kept, and the fp8 cache
    file the weights are mapped from (``None``: not mapped from a cache)."""

    tensors: int
    mapped: int
    host_bytes: int
    cache_file: Path | None = None


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


def scratch_buffer(nbytes: int) -> torch.Tensor:
    """A byte tensor in its own anonymous mapping, given back to the system when freed (the C allocator
    may keep a freed heap block for later, in private memory)."""
    if not nbytes:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=torch.uint8)


class CheckpointReader:
    """Reads a checkpoint's tensors in the dtypes a model planned, from whichever shard holds them.

    A conversion reads through ``staging``, one byte buffer (at most 64 MiB) reused for every tensor
    and slice: per-tensor temporaries would leave holes in the heap that the kept tensors cannot fill
    (or, for ``pieces``, that the allocator keeps after the file is written). fp8 targets are rounded
    to a narrower ``compute_dtype`` first, as ``from_pretrained(torch_dtype=compute_dtype)`` then
    layerwise casting would round them (a float32 checkpoint gives the same fp8 bytes).
    """

    def __init__(self, files: list[Path], compute_dtype: torch.dtype | None = None) -> None:
        self.files = [Path(f) for f in files]
        self.shards = [Shard(path) for path in self.files]
        self.owner = {key: shard for shard in self.shards for key in shard.entries}
        self.compute_dtype = compute_dtype
        sizes = [e["data_offsets"][1] - e["data_offsets"][0] for s in self.shards for e in s.entries.values()]
        self.staging = scratch_buffer(min(max(sizes, default=0), STAGING_BYTES))
        self._open: dict[Path, Any] = {}
        self._maps: dict[Path, dict[str, torch.Tensor]] = {}
        self._out = self._via = torch.empty(0, dtype=torch.uint8)
        self._stack = ExitStack()

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._maps.clear()

    def layout(self, slots: dict[str, torch.Tensor]) -> list[tuple[str, torch.dtype, torch.Size]]:
        """Every checkpoint tensor with the dtype its model slot planned; clear errors for mismatches."""
        out = []
        for key, shard in self.owner.items():
            if key not in slots:
                raise KeyError(f"{shard.path.name}: tensor {key!r} has no place in the model")
            if shard.shape(key) != slots[key].shape:
                shape, model_shape = tuple(shard.shape(key)), tuple(slots[key].shape)
                raise ValueError(f"{key}: checkpoint shape {shape} != model shape {model_shape}")
            out.append((key, slots[key].dtype, shard.shape(key)))
        return out

    def tensor(
        self, key: str, dtype: torch.dtype, arena: PinnedArena | None = None
    ) -> tuple[torch.Tensor, bool]:
        """Tensor ``key`` in ``dtype``; whether it is a view of the mapped shard (same dtype, no arena)."""
        shard = self.owner[key]
        stored, shape = shard.dtype(key), shard.shape(key)
        if arena is None and stored == dtype:
            return self._mapped(key), True
        if stored == dtype:
            target = arena.empty(shape, stored)
            shard.read_into(self._file(shard.path), key, target)
            return target, False
        target = torch.empty(shape, dtype=dtype) if arena is None else arena.empty(shape, dtype)
        flat = target.view(-1)
        for first, source in self._slices(key):
            flat[first : first + source.numel()].copy_(self._rounded(source, dtype))
        return target, False

    def pieces(self, key: str, dtype: torch.dtype) -> Iterator[torch.Tensor]:
        """Tensor ``key`` in ``dtype`` as consecutive flat pieces, each valid only until the next is
        asked for (they share one reused buffer): what writing it to a file needs, and no more."""
        if self.stored(key) == dtype:
            yield self._mapped(key)
            return
        for _, source in self._slices(key):
            piece = self._buffer("_out", source.numel() * dtype.itemsize).view(dtype)
            yield piece.copy_(self._rounded(source, dtype))

    def _slices(self, key: str) -> Iterator[tuple[int, torch.Tensor]]:
        """(first element, that slice of the stored tensor in ``staging``) over the whole tensor."""
        shard = self.owner[key]
        stored, numel = shard.dtype(key), shard.shape(key).numel()
        step = self.staging.numel() // stored.itemsize
        for first in range(0, numel, step):
            source = self.staging[: min(step, numel - first) * stored.itemsize].view(stored)
            shard.read_into(self._file(shard.path), key, source, skip=first * stored.itemsize)
            yield first, source

    def _rounded(self, source: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``source`` rounded to the compute dtype first when it is bound for fp8 and the compute dtype is
        narrower than the stored one (a wider one rounds nothing), in a reused buffer."""
        via = self.compute_dtype
        fp8 = dtype.is_floating_point and dtype.itemsize == 1
        if not fp8 or via is None or via.itemsize >= source.dtype.itemsize:
            return source
        rounded = self._buffer("_via", source.numel() * via.itemsize).view(via)
        return rounded.copy_(source)

    def _buffer(self, name: str, nbytes: int) -> torch.Tensor:
        """The first ``nbytes`` of a byte buffer kept for reuse, grown when too small."""
        if getattr(self, name).numel() < nbytes:
            setattr(self, name, scratch_buffer(nbytes))
        return getattr(self, name)[:nbytes]

    def _mapped(self, key: str) -> torch.Tensor:
        path = self.owner[key].path
        if path not in self._maps:
            self._maps[path] = map_safetensors(path)
        return self._maps[path][key]

    def stored(self, key: str) -> torch.dtype:
        return self.owner[key].dtype(key)

    def residue(self, key: str) -> int:
        """Where ``key``'s bytes start past a 64-byte boundary of its (page-aligned) mapped shard."""
        shard = self.owner[key]
        return (shard.data_start + shard.entries[key]["data_offsets"][0]) % TENSOR_ALIGN

    def _file(self, path: Path) -> Any:
        if path not in self._open:
            self._open[path] = self._stack.enter_context(path.open("rb", buffering=0))
        return self._open[path]


def _slots(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    slots = dict(model.named_parameters(remove_duplicate=False))
    slots.update(model.named_buffers(remove_duplicate=False))
    return slots


def stream_weights(
    model: torch.nn.Module,
    files: list[Path],
    arena: PinnedArena | None = None,
    compute_dtype: torch.dtype | None = None,
) -> LoadReport:
    """Set every parameter of the empty ``model`` from ``files``, one tensor at a time, in its planned dtype.

    A tensor whose file dtype is its final dtype (and needs no pinning) stays a view of the mapped file;
    any other is read into a temporary of one tensor and converted. Raises ``KeyError`` for checkpoint
    tensors the model lacks and ``ValueError`` for parameters no file provided (after tying shared
    weights, as transformers models declare them).
    """
    mapped = 0
    with CheckpointReader(files, compute_dtype) as reader:
        layout = reader.layout(_slots(model))
        for key, dtype, _ in layout:
            value, was_mapped = reader.tensor(key, dtype, arena)
            _set_tensor(model, key, value)
            mapped += was_mapped
    return _finish(model, len(layout), mapped)


def map_through_fp8_cache(
    model: torch.nn.Module, files: list[Path], cache_folder: Path, name: str, compute_dtype: torch.dtype
) -> LoadReport | None:
    """Set the empty, fp8-planned ``model`` to views of its fp8 cache file in ``cache_folder`` (written
    first from ``files`` when missing or invalid, one tensor at a time); ``None`` when no cache file can
    be written (the caller streams into RAM instead)."""
    with CheckpointReader(files, compute_dtype) as reader:
        layout = reader.layout(_slots(model))
        planned = {key: dtype for key, dtype, _ in layout}
        kept = {key: reader.residue(key) for key, dtype, _ in layout if reader.stored(key) == dtype}
        path = ensure_cache(
            cache_folder, name, files, model, layout, lambda key: reader.pieces(key, planned[key]), kept
        )
    if path is None:
        return None
    tensors = map_safetensors(path)
    for key, value in tensors.items():
        _set_tensor(model, key, value)
    setattr(model, MAPPED_FROM, path)
    return _finish(model, len(tensors), len(tensors), path)


def _finish(model: torch.nn.Module, count: int, mapped: int, cache_file: Path | None = None) -> LoadReport:
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"{type(model).__name__}: no weights in the checkpoint for {missing[:5]}")
    host = sum(t.numel() * t.element_size() for t in _unique_tensors(model))
    return LoadReport(count, mapped, host, cache_file)


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
    model_class: type,
    folder: Path,
    compute_dtype: torch.dtype,
    level: int,
    pin: bool = False,
    fp8_cache: Path | None = None,
) -> tuple[torch.nn.Module, LoadReport]:
    """``model_class`` (a diffusers or transformers model) from ``folder``, built empty and filled
    tensor by tensor in its level's dtypes; pinned host memory when ``pin`` (group offload on CUDA).

    At level 5+ with an ``fp8_cache`` folder the weights are instead mapped from an fp8 cache file
    there (written on first use; see ``fp8_cache.py``), neither copied nor pinned.
    """
    folder = Path(folder)
    if hasattr(model_class, "load_config"):
        with init_empty_weights():
            model = model_class.from_config(model_class.load_config(folder))
    else:
        config = model_class.config_class.from_pretrained(folder)
        with init_empty_weights():
            model = model_class(config)
    plan_dtypes(model, compute_dtype, level)
    files = shard_files(folder)
    if fp8_cache is not None and level >= FP8_STORAGE:
        report = map_through_fp8_cache(model, files, fp8_cache, folder.name, compute_dtype)
        if report is not None:
            return model.eval(), report
    arena = PinnedArena() if pin else None
    report = stream_weights(model, files, arena, compute_dtype)
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
    folder: Path,
    level: int,
    compute_dtype: torch.dtype,
    device: torch.device,
    fp8_cache: Path | None = None,
) -> dict[str, torch.nn.Module]:
    """Components loaded tensor by tensor for ``level`` (4+), to pass to ``from_pretrained``.

    The DiT(s) go straight into their final form: pinned host memory for group offload on CUDA, fp8 at
    level 5, mapped from fp8 cache files in ``fp8_cache`` when given (``fp8_cache.fp8_cache_dir``).
    Wan2.2 A14B's two experts (``transformer``, ``transformer_2``) load one after the other.
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
        loaded[name], report = load_model_low_ram(
            model_class, folder / name, compute_dtype, level, pin, fp8_cache
        )
        gib = report.host_bytes / 2**30
        where = f"mapped from {report.cache_file}" if report.cache_file else "in RAM"
        log.info("%s: %d tensors, %.2f GiB on the host, %s", name, report.tensors, gib, where)
    encoder_class = _component_class(index, TEXT_ENCODER)
    if encoder_class is not None:
        encoder_folder = folder / TEXT_ENCODER
        dtype = stored_dtype(encoder_folder)
        loaded[TEXT_ENCODER], report = load_model_low_ram(encoder_class, encoder_folder, dtype, 0)
        log.info("text encoder: %d of %d tensors mapped from its files", report.mapped, report.tensors)
    return loaded
