"""Loading diffusers pipelines for model cards and keeping the last one loaded between jobs."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

from core.hardware import compute_dtype
from weights.registry import ModelCard

Loader = Callable[[ModelCard, Path, torch.device], Any]


def load_diffusers_pipeline(card: ModelCard, folder: Path, device: torch.device) -> Any:
    """``card.pipeline`` from ``folder`` in the device's compute dtype, VAE kept in float32 as Wan needs."""
    pipeline_class = getattr(diffusers, card.pipeline)
    pipe = pipeline_class.from_pretrained(
        folder, dtype={"default": compute_dtype(device), "vae": torch.float32}
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass
class _Loaded:
    card_id: str
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

    def get(self, card: ModelCard, folder: Path) -> Any:
        """The pipeline for ``card``, loading it from ``folder`` if another (or none) is loaded."""
        with self._lock:
            if self._loaded and self._loaded.card_id == card.id:
                return self._loaded.pipe
            self._release()
            self._loaded = _Loaded(card.id, self.loader(card, folder, self.device))
            return self._loaded.pipe

    def unload(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._loaded = None
        free_memory(self.device)


def free_memory(device: torch.device) -> None:
    """Collect garbage and return cached GPU memory to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
