"""The one owner of what is loaded on a device, and of running a job's model on it within its memory.

A device holds one model at a time: a diffusers pipeline, MAGI-1's models or an upscaler, keyed by the card,
the memory level and a ``variant`` (whatever else changes the loaded objects in place: speed options,
LoRAs, a split's layout, an upscaler's variant). Asking for anything else frees what was there first.
Which level a run uses is decided by :func:`core.memory.planner.plan_memory` (the one place that decides
it); an out-of-memory error steps up one level through :func:`core.memory.oom.run_with_oom_retry`.
The single-GPU runner, each rank of a split and both upscalers load through this class.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from core.hardware import detect_hardware
from core.magi.models import load_magi_models
from core.magi.request import MAGI_PIPELINE
from core.memory.apply import place_encoders
from core.memory.levels import TEXT_ENCODER_ON_CPU
from core.memory.oom import run_with_oom_retry
from core.memory.planner import MemoryPlan, plan_memory
from core.model_store import ensure_model
from core.pipelines import free_memory, load_diffusers_pipeline
from core.settings import Settings
from weights.registry import ModelCard

T = TypeVar("T")
SPOILED_MARK = "_video_studio_spoiled"
"""Set on a loaded model that a failure left unfit to run again (e.g. LoRAs half merged into its
weights): the next :meth:`DeviceModels.get` loads it anew."""
Loader = Callable[[ModelCard, Path, torch.device, int], Any]
"""Loads ``card`` from its folder onto a device at a memory level."""


class ProgressJob(Protocol):
    """What loading needs of a job: progress reports and its cancel."""

    @property
    def cancel_requested(self) -> bool: ...

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None: ...

    def check_cancelled(self) -> None: ...


@dataclass(frozen=True)
class _Loaded:
    key: tuple[str, int, Hashable]
    model: Any


class DeviceModels:
    """What is loaded on ``device`` (one model at a time) and the memory plan of a run there."""

    def __init__(self, device: torch.device, settings: Settings, loader: Loader | None = None) -> None:
        self.device = device
        self.settings = settings
        self.loader = loader
        """Loads every card when set (tests, benchmarks); else :meth:`default_loader` picks by card."""
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    @property
    def loaded_id(self) -> str | None:
        return self._loaded.key[0] if self._loaded else None

    @property
    def loaded_level(self) -> int | None:
        return self._loaded.key[1] if self._loaded else None

    def default_loader(self, card: ModelCard) -> Loader:
        """MAGI-1's own models for a MAGI-1 card, else the card's diffusers pipeline."""
        if card.pipeline == MAGI_PIPELINE:
            return lambda card, folder, device, level: load_magi_models(card, folder, device, self.settings)
        return partial(load_diffusers_pipeline, models_dir=self.settings.models_dir)

    def get(
        self,
        card: ModelCard,
        folder: Path,
        level: int = 0,
        variant: Hashable = None,
        loader: Loader | None = None,
    ) -> Any:
        """The model of ``card`` at memory ``level`` and ``variant``, loaded from ``folder`` unless it is
        what this device holds already and not spoiled (offload and casting hooks cannot be undone, so a
        new level reloads). ``loader`` loads it (default: :attr:`loader`, else by card)."""
        key = (card.id, level, variant)
        with self._lock:
            loaded = self._loaded
            if loaded is not None and loaded.key == key and not getattr(loaded.model, SPOILED_MARK, False):
                return loaded.model
            self._release()
            load = loader or self.loader or self.default_loader(card)
            try:
                model = load(card, folder, self.device, level)
            except BaseException:
                free_memory(self.device)
                raise
            self._loaded = _Loaded(key, model)
            return model

    def unload(self) -> None:
        """Free whatever this device holds."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._loaded = None
        gc.unfreeze()  # what a job froze (see after_job) may now be garbage
        free_memory(self.device)

    def fetch(self, card: ModelCard, job: ProgressJob) -> Path:
        """``card``'s weights folder, downloaded first when missing (progress and cancel through ``job``)."""
        job.report("preparing weights")
        folder = ensure_model(
            card,
            self.settings,
            on_progress=lambda p: job.report("downloading", p.bytes_done, p.bytes_total, p.describe()),
            should_cancel=lambda: job.cancel_requested,
        )
        job.check_cancelled()
        return folder

    def plan(
        self,
        card: ModelCard,
        width: int,
        height: int,
        frames: int,
        level: str = "auto",
        decode_frames: int | None = None,
    ) -> MemoryPlan:
        """The memory level a video of that size would use on this device, from its free memory now
        (``decode_frames``: see :func:`core.memory.estimate.estimate_memory`)."""
        gpu = self.device.index if self.device.type == "cuda" else None
        hardware = detect_hardware(() if gpu is None else (gpu,))
        return plan_memory(
            card, width, height, frames, hardware, gpu, override=level, decode_frames=decode_frames
        )

    def run_planned(
        self,
        job: ProgressJob,
        card: ModelCard,
        size: tuple[int, int, int],
        memory_level: str,
        generate: Callable[[Any], T],
        variant: Hashable | Callable[[int], Hashable] = None,
        decode_frames: int | None = None,
        loader: Loader | None = None,
    ) -> tuple[T, MemoryPlan, int]:
        """Fetch ``card``'s weights, plan memory for ``size`` (width, height, frames), load the model
        (with ``loader`` when given, see :meth:`get`) and return ``generate(model)`` with the plan and the
        level it ran at: an out-of-memory error reloads one level up and tries once more. ``variant``
        may be a function of the level (what a level changes in place, e.g. merged LoRAs)."""
        folder = self.fetch(card, job)
        plan = self.plan(card, *size, memory_level, decode_frames)
        level = [plan.level]
        variant_at = variant if callable(variant) else lambda _: variant

        def load(new_level: int) -> Any:
            level[0] = new_level
            job.report(f"loading model (memory level {new_level})")
            return self.get(card, folder, new_level, variant_at(new_level), loader)

        loaded = load(plan.level)
        if plan.level >= TEXT_ENCODER_ON_CPU:
            place_encoders(loaded, plan.text_encoder_gpu, self.device)  # kept there between jobs
        job.check_cancelled()
        try:
            result = run_with_oom_retry(
                lambda: generate(self.get(card, folder, level[0], variant_at(level[0]), loader)),
                plan,
                load,
                lambda message: job.report(message),
                release=self.unload,
            )
        finally:
            self.after_job()
        return result, plan, level[0]

    def after_job(self) -> None:
        """Free a finished job's garbage and cached GPU memory, then freeze what survives (the loaded model
        above all) out of later collections, so the next job's collection walks only what that job made:
        a full one over a loaded pipeline took 0.2-0.5 s of every job. Releasing the model thaws it all."""
        free_memory(self.device)
        gc.freeze()


class Worker(Protocol):
    """Where a job runs: the settings, the device and what is loaded on it (:class:`core.runner.Runner`)."""

    settings: Settings
    device: torch.device
    models: DeviceModels
