"""Loading a model card's diffusers pipeline, setting its scheduler's shift, and freeing memory."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import diffusers
import torch

from core.hardware import available_ram_gib, compute_dtype
from core.memory.apply import apply_memory_level
from core.memory.low_ram_load import load_components_low_ram
from core.memory.planner import maps_fp8_dit
from weights.registry import ModelCard
from weights.store import fp8_cache_dir


def load_diffusers_pipeline(
    card: ModelCard,
    folder: Path,
    device: torch.device,
    level: int = 0,
    *,
    models_dir: Path | None = None,
    pipeline: str | None = None,
    without: tuple[str, ...] = (),
) -> Any:
    """``card.pipeline`` (or the diffusers class named ``pipeline``: image to video loads a TI2V card's
    folder as ``WanImageToVideoPipeline``) from ``folder`` in the device's compute dtype (VAE in float32,
    as Wan needs), placed on ``device`` at low-memory ``level`` (see ``core/memory/levels.py``). From
    level 4 the DiT(s) load tensor by tensor straight into their offloaded form
    (``core/memory/low_ram_load.py``); from level 5 pinned in RAM where that leaves room, else mapped
    from an fp8 cache in ``models_dir`` (:func:`core.memory.planner.maps_fp8_dit`; default
    ``models_dir``: the folder's parent when the folder is ``<models dir>/<card id>``; a model elsewhere
    without ``models_dir`` keeps its DiT in RAM). Components named in ``without`` are not loaded (None:
    a split rank that is handed the prompt embeddings skips the text encoder)."""
    pipeline_class = getattr(diffusers, pipeline or card.pipeline)
    dtypes = {"default": compute_dtype(device), "vae": torch.float32}
    if models_dir is None and Path(folder).name == card.id:
        models_dir = Path(folder).parent
    mapped = models_dir is not None and maps_fp8_dit(card, device.type, available_ram_gib())
    cache = fp8_cache_dir(models_dir, card.id) if mapped else None
    dits = load_components_low_ram(folder, level, dtypes["default"], device, fp8_cache=cache)
    skipped = dict.fromkeys(without)
    pipe = pipeline_class.from_pretrained(folder, dtype=dtypes, **(dits | skipped))
    pipe.set_progress_bar_config(disable=True)
    apply_memory_level(pipe, level, device)
    return pipe


def set_flow_shift(pipe: Any, shift: float) -> None:
    """Give the pipeline's flow-matching scheduler the asked shift (a new scheduler from the same config)."""
    scheduler = pipe.scheduler
    if "flow_shift" in scheduler.config and scheduler.config.flow_shift != shift:
        pipe.scheduler = type(scheduler).from_config(scheduler.config, flow_shift=shift)


def free_memory(device: torch.device | None = None) -> None:
    """Collect garbage and return cached GPU memory to the driver (``None``: whichever GPU holds it)."""
    gc.collect()
    if device is None or device.type == "cuda":
        torch.cuda.empty_cache()
