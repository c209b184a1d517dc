"""Pick the low-memory level for a run from the detected free VRAM and RAM, and say why."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from core.hardware import GpuInfo, Hardware, detect_hardware
from core.memory.estimate import Calibration, MemoryEstimate, estimate_memory, load_calibration, shape_for
from core.memory.levels import FP8_STORAGE, LEVELS, MAX_LEVEL, TEXT_ENCODER_ON_CPU, parse_override
from core.validation import ConfigError, as_int
from weights.registry import ModelCard


@dataclass(frozen=True)
class MemoryPlan:
    """The level a run will use, its estimated peaks (GB = GiB, as ``Hardware`` reports) and why."""

    level: int
    device: str
    vram_gb: float
    ram_gb: float
    free_vram_gb: float | None
    ram_available_gb: float
    fits: bool
    reason: str
    chosen_by: str
    mapped_gb: float = 0.0
    """Weights mapped from files on disk (page cache), beside ``ram_gb``."""
    text_encoder_gpu: bool = False
    """The text (and image) encoder lives on the GPU, and stays there between jobs: below level 2 always;
    from level 2 when Auto finds room for it beside the level's peak (:func:`keeps_text_encoder`)."""

    @property
    def label(self) -> str:
        return f"level {self.level} ({LEVELS[self.level].label})"


PIN_SPARE_GIB = 4.0
"""RAM left available when a level-5 fp8 DiT is pinned instead of mapped from its cache file."""
MARGIN = 1.1
"""Headroom asked above a streaming upscale's estimate."""
KV_OFFLOAD_MAX_VRAM_GB = 24.0
"""FlashVSR's deployment rule: its KV cache lives in host memory on cards with this much or less."""
T5_ENCODER_GB = 19.0
"""MAGI-1's t5-v1_1-xxl encoder in float32."""
T5_GPU_HEADROOM_GB = 16.0
"""GPU memory left for MAGI-1's activations and KV cache when T5 joins the DiT there."""


@dataclass(frozen=True)
class UpscalePlan:
    """Whether a streaming upscale fits the GPU, where its KV cache lives, and why."""

    fits: bool
    kv_offload: bool
    vram_gb: float
    reason: str


def plan_upscale(
    card: ModelCard,
    width: int,
    height: int,
    device: torch.device,
    free_gb: float | None = None,
    total_gb: float | None = None,
) -> UpscalePlan:
    """Plan an upscale to ``width`` x ``height`` on ``device`` before it starts, from the card's
    ``extra.memory`` facts (GiB = weights + per output megapixel, + the KV cache's per megapixel when it
    stays on the GPU): the KV cache stays on the GPU where that fits (and the card is over 24 GB, the
    deployment's rule), goes to RAM where only that fits, and a size that fits neither is refused with the
    reason. A model without the facts (Real-ESRGAN: tiles, frame by frame) and the CPU always fit."""
    facts = card.extra.get("memory")
    if device.type != "cuda" or not facts:
        return UpscalePlan(True, False, 0.0, "runs frame by frame in bounded chunks")
    if free_gb is None or total_gb is None:
        free, total = torch.cuda.mem_get_info(device)
        free_gb = free / 2**30 + own_reserved_gb(device.index or 0)
        total_gb = total / 2**30
    megapixels = width * height / 1e6
    offloaded = facts["weights_gib"] + facts["per_megapixel_gib"] * megapixels
    on_gpu = offloaded + facts["kv_per_megapixel_gib"] * megapixels
    size = f"{width}x{height}"
    if total_gb > KV_OFFLOAD_MAX_VRAM_GB and on_gpu * MARGIN <= free_gb:
        return UpscalePlan(True, False, on_gpu, f"about {on_gpu:.1f} GB at {size}, KV cache on the GPU")
    if offloaded * MARGIN <= free_gb:
        why = "as on every card of 24 GB or less" if total_gb <= KV_OFFLOAD_MAX_VRAM_GB else "to fit (slower)"
        reason = f"about {offloaded:.1f} GB at {size}, KV cache in RAM {why}"
        return UpscalePlan(True, True, offloaded, reason)
    return UpscalePlan(
        False,
        True,
        offloaded,
        f"upscaling to {size} needs about {offloaded:.1f} GB of GPU memory even with the KV cache in RAM; "
        f"GPU {device.index or 0} has {free_gb:.1f} GB free: choose x2, a smaller max input width, or free "
        "the GPU",
    )


def text_encoder_device(card: ModelCard, device: torch.device) -> torch.device:
    """Where MAGI-1's T5 runs: the card's ``t5_device`` ("cpu" for 4.5B as published), or the GPU when it
    has room for T5 beside the loaded DiT and VAE with headroom to spare (asked once they are loaded)."""
    if device.type != "cuda":
        return torch.device("cpu")
    if card.extra.get("t5_device", "cpu") != "cpu":
        return device
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return device if free_bytes / 2**30 - T5_ENCODER_GB >= T5_GPU_HEADROOM_GB else torch.device("cpu")


def plan_level_for_gpus(
    card: ModelCard, size: tuple[int, int, int], gpus: tuple[int, ...] | None, override: str = "auto"
) -> int:
    """One level for a job split over ``gpus`` (every rank loads alike): the asked one, else the highest
    the planner picks for any of them from its free memory now (0 without GPUs, as on the CPU)."""
    forced = parse_override(override)
    if forced is not None:
        return forced
    if not gpus:
        return 0
    hardware = detect_hardware(tuple(gpus))
    return max(plan_memory(card, *size, hardware, gpu).level for gpu in gpus)


def maps_fp8_dit(
    card: ModelCard, device_type: str, ram_available_gib: float, cal: Calibration | None = None
) -> bool:
    """Whether the level-5 DiT should be mapped from its fp8 cache file rather than pinned in RAM.

    Pinned runs faster (14B 480p on an H100: a forward at 1.10x the pinned time when mapped with the
    file in the page cache, 3.7x when read from disk) and needs no cache file, but holds the whole fp8
    DiT (14B: 14 GiB) in locked RAM. So on a GPU the DiT is pinned when that leaves ``PIN_SPARE_GIB``
    available, else mapped. On the CPU it is always mapped (that only lowers the loading peak). A GPU run's
    RAM does not depend on the video size, so any size gives the same estimate.
    """
    if device_type != "cuda":
        return True
    pinned = estimate_memory(card, 832, 480, 81, FP8_STORAGE, "cuda", cal, map_fp8=False)
    return pinned.ram_gib + PIN_SPARE_GIB > ram_available_gib


def encoders_gib(card: ModelCard, cal: Calibration) -> float:
    """The text encoder and (Wan2.1 image to video) CLIP image encoder in bfloat16 on a GPU."""
    shape = shape_for(card, cal)
    return (shape.text_encoder_params + shape.image_encoder_params) * 1e9 * 2 / 2**30


def keeps_text_encoder(
    card: ModelCard, est: MemoryEstimate, free_gb: float, cal: Calibration, chosen_by: str
) -> tuple[bool, str]:
    """Whether the text encoder lives on the GPU at ``est``'s level, and why: below level 2 it always
    does; from level 2 an Auto plan keeps it there (encoding on the GPU, never moved between jobs) when
    the level's peak plus the encoders still fits ``free_gb`` with margin (the 14B A14B pair at level 4
    on an 80 GB card, say); a level the user chose keeps its rule (the encoder in RAM)."""
    if est.level < TEXT_ENCODER_ON_CPU:
        return True, ""
    if chosen_by != "auto":
        return False, ""
    encoders = encoders_gib(card, cal)
    wants = cal.with_margin(est.vram_gib + encoders)
    if not encoders or wants > free_gb:
        return False, ""
    return (
        True,
        f" The text encoder ({encoders:.1f} GB) stays on the GPU: there is room for it beside the peak.",
    )


def own_reserved_gb(index: int) -> float:
    """GPU memory this process's allocator already holds: free for the next run, as the pipeline cache
    drops the old pipeline before loading another (and a kept pipeline is part of the estimate)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0.0
    return torch.cuda.memory_reserved(index) / 2**30


def _gpu(hardware: Hardware, gpu_index: int | None) -> GpuInfo | None:
    if not hardware.gpus:
        if gpu_index is not None:
            raise ConfigError(f"GPU {gpu_index} was asked for, but no CUDA GPU was found")
        return None
    if gpu_index is None:
        return hardware.gpus[0]
    for gpu in hardware.gpus:
        if gpu.index == gpu_index:
            return gpu
    raise ConfigError(f"no GPU {gpu_index}; found GPU(s) {', '.join(str(g.index) for g in hardware.gpus)}")


def _ram_note(est: MemoryEstimate, hardware: Hardware) -> str:
    if est.ram_gib <= hardware.ram_available_gb:
        return ""
    return (
        f" Needs about {est.ram_gib:.1f} GB of RAM while loading, {hardware.ram_available_gb:.1f} GB"
        " available: loading may swap or fail."
    )


def mapped_text(est: MemoryEstimate, hardware: Hardware) -> str:
    """What the run maps from disk and, when RAM cannot cache it all, that steps will read the disk."""
    if not est.mapped_gib:
        return ""
    text = f", mapped from disk: {est.mapped_gib:.1f} GB"
    if est.ram_gib + est.mapped_gib > hardware.ram_available_gb:
        text += " (more than RAM can cache: parts are read from disk again, slower)"
    return text


def _cpu_plan(estimate: MemoryEstimate, hardware: Hardware, chosen_by: str) -> MemoryPlan:
    fits = estimate.ram_gib <= hardware.ram_available_gb
    ram = f"about {estimate.ram_gib:.1f} GB RAM{mapped_text(estimate, hardware)}"
    reason = f"No CUDA GPU: runs on the CPU at level {estimate.level}, {ram}."
    return MemoryPlan(
        estimate.level,
        "cpu",
        0.0,
        estimate.ram_gib,
        None,
        hardware.ram_available_gb,
        fits,
        reason + _ram_note(estimate, hardware),
        chosen_by,
        estimate.mapped_gib,
    )


def _gpu_plan(
    est: MemoryEstimate,
    gpu: GpuInfo,
    hardware: Hardware,
    cal: Calibration,
    chosen_by: str,
    why: str,
    card: ModelCard,
) -> MemoryPlan:
    vram_ok = cal.with_margin(est.vram_gib) <= gpu.free_gb
    resident, kept = keeps_text_encoder(card, est, gpu.free_gb, cal, chosen_by)
    if resident and est.level >= TEXT_ENCODER_ON_CPU:
        est = replace(est, vram_gib=est.vram_gib + encoders_gib(card, cal))
    ram_ok = est.ram_gib <= hardware.ram_available_gb
    level = LEVELS[est.level]
    reason = (
        f"Level {level.number} ({level.label}): about {est.vram_gib:.1f} GB peak on GPU {gpu.index} "
        f"({gpu.free_gb:.1f} GB free) and {est.ram_gib:.1f} GB of RAM{mapped_text(est, hardware)}. {why}"
    )
    if not vram_ok:
        wants = f"wants {cal.with_margin(est.vram_gib):.1f} GB free with margin"
        reason += (
            f" This will likely run out of GPU memory ({wants}): choose Auto or a higher level."
            if chosen_by == "user" and est.level < MAX_LEVEL
            else f" Even this may run out of GPU memory ({wants}): try fewer frames or a smaller size."
        )
    reason = (reason + kept + _ram_note(est, hardware)).strip()
    return MemoryPlan(
        est.level,
        f"cuda:{gpu.index}",
        est.vram_gib,
        est.ram_gib,
        gpu.free_gb,
        hardware.ram_available_gb,
        vram_ok and ram_ok,
        reason,
        chosen_by,
        est.mapped_gib,
        resident,
    )


def plan_memory(
    card: ModelCard,
    width: int,
    height: int,
    frames: int,
    hardware: Hardware,
    gpu_index: int | None = None,
    override: int | str | None = "auto",
    *,
    calibration: Calibration | None = None,
    decode_frames: int | None = None,
) -> MemoryPlan:
    """The lowest level whose estimate fits the free VRAM (with margin) and the available RAM.

    Free VRAM is the GPU's free memory plus what this process's allocator already holds.

    ``override`` is "auto"/None or a level 0..6 chosen by the user (kept even when it will not fit;
    the reason then says so). Without a GPU the run goes to the CPU at level 0 unless overridden.
    ``decode_frames``: see :func:`estimate_memory`.
    """
    forced: Any = parse_override(override)
    width, height = as_int("width", width, low=16), as_int("height", height, low=16)
    frames = as_int("frames", frames, low=1)
    cal = calibration or load_calibration()
    gpu = _gpu(hardware, gpu_index)
    if gpu is not None:
        gpu = replace(gpu, free_gb=min(gpu.total_gb, gpu.free_gb + own_reserved_gb(gpu.index)))
    chosen_by = "auto" if forced is None else "user"
    if gpu is None:
        est = estimate_memory(
            card, width, height, frames, forced or 0, "cpu", cal, decode_frames=decode_frames
        )
        return _cpu_plan(est, hardware, chosen_by)
    mapped = maps_fp8_dit(card, "cuda", hardware.ram_available_gb, cal)

    def estimate(level: int) -> MemoryEstimate:
        return estimate_memory(
            card, width, height, frames, level, "cuda", cal, map_fp8=mapped, decode_frames=decode_frames
        )

    if forced is not None:
        est = estimate(forced)
        return _gpu_plan(est, gpu, hardware, cal, chosen_by, "Chosen by you.", card)
    estimates = [estimate(n) for n in range(MAX_LEVEL + 1)]
    fitting = [e for e in estimates if cal.with_margin(e.vram_gib) <= gpu.free_gb]
    both = [e for e in fitting if e.ram_gib <= hardware.ram_available_gb]
    chosen = (both or fitting or estimates[-1:])[0]
    if chosen.level == 0:
        why = "Everything fits on the GPU."
    else:
        why = _why_not(estimates[chosen.level - 1], gpu, hardware, cal)
    return _gpu_plan(chosen, gpu, hardware, cal, chosen_by, why, card)


def _why_not(below: MemoryEstimate, gpu: GpuInfo, hardware: Hardware, cal: Calibration) -> str:
    """Why Auto passed over ``below``, the level under its pick: its VRAM or, when that fits, its RAM."""
    wants = cal.with_margin(below.vram_gib)
    if wants > gpu.free_gb:
        return f"Level {below.level} would need about {wants:.1f} GB free."
    return (
        f"Level {below.level} would fit the GPU but needs about {below.ram_gib:.1f} GB of RAM "
        f"({hardware.ram_available_gb:.1f} GB available)."
    )
