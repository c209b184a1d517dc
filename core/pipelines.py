"""Loading diffusers pipelines for model cards and keeping the last one loaded between jobs."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

from core.hardware import available_ram_gib, compute_dtype
from core.memory.apply import apply_memory_level
from core.memory.fp8_cache import maps_fp8_dit
from core.memory.low_ram_load import load_components_low_ram
from weights.registry import ModelCard
from weights.store import fp8_cache_dir

Loader = Callable[[ModelCard, Path, torch.device, int], Any]


def load_diffusers_pipeline(
    card: ModelCard, folder: Path, device: torch.device, level: int = 0, *, models_dir: Path | None = None
) -> Any:
    """``card.pipeline`` from ``folder`` in the device's compute dtype (VAE in float32, as Wan needs),
    placed on ``device`` at low-memory ``level`` (see ``core/memory/levels.py``). From level 4 the DiT(s)
    load tensor by tensor straight into their offloaded form (``core/memory/low_ram_load.py``); from
    level 5 pinned in RAM where that leaves room, else mapped from an fp8 cache in ``models_dir``
    (:func:`core.memory.fp8_cache.maps_fp8_dit`; default ``models_dir``: the folder's parent when the
    folder is ``<models dir>/<card id>``; a model elsewhere without ``models_dir`` keeps its DiT in RAM)."""
    pipeline_class = getattr(diffusers, card.pipeline)
    dtypes = {"default": compute_dtype(device), "vae": torch.float32}
    if models_dir is None and Path(folder).name == card.id:
        models_dir = Path(folder).parent
    mapped = models_dir is not None and maps_fp8_dit(card, device.type, available_ram_gib())
    cache = fp8_cache_dir(models_dir, card.id) if mapped else None
    dits = load_components_low_ram(folder, level, dtypes["default"], device, fp8_cache=cache)
    pipe = pipeline_class.from_pretrained(folder, dtype=dtypes, **dits)
    pipe.set_progress_bar_config(disable=True)
    apply_memory_level(pipe, level, device)
    return pipe


@dataclass
class _Loaded:
    card_id: str
    level: int
    variant: Hashable
    pipe: Any


class PipelineCache:
    """Holds at most one pipeline; asking for another model frees the current one (and its GPU memory)."""

    def __init__(self, device: torch.device, loader: Loader = load_diffusers_pipeline) -> None:
        self.device = device
        self.loader = loader
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    @property
    def loaded_id(self) -> str | None:
        return self._loaded.card_id if self._loaded else None

    @property
    def loaded_level(self) -> int | None:
        return self._loaded.level if self._loaded else None

    def get(self, card: ModelCard, folder: Path, level: int = 0, variant: Hashable = None) -> Any:
        """The pipeline for ``card`` at memory ``level``, loading it from ``folder`` if another model,
        another level or none is loaded (offload and casting hooks cannot be undone, so a new level reloads).
        ``variant`` names other in-place changes the caller makes (e.g. speed options): a new one reloads.
        """
        key = (card.id, level, variant)
        with self._lock:
            if self._loaded and (self._loaded.card_id, self._loaded.level, self._loaded.variant) == key:
                return self._loaded.pipe
            self._release()
            try:
                pipe = self.loader(card, folder, self.device, level)
            except BaseException:
                free_memory(self.device)
                raise
            self._loaded = _Loaded(card.id, level, variant, pipe)
            return pipe

    def unload(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._loaded = None
        free_memory(self.device)


def free_memory(device: torch.device | None = None) -> None:
    """Collect garbage and return cached GPU memory to the driver (``None``: whichever GPU holds it)."""
    gc.collect()
    if device is None or device.type == "cuda":
        torch.cuda.empty_cache()
