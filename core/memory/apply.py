"""Place a freshly loaded (CPU) pipeline on a device at one low-memory level.

Replaces a plain ``pipe.to(device)``. Uses diffusers' own tools: VAE ``enable_tiling``/``enable_slicing``,
``enable_layerwise_casting`` and ``enable_group_offload``; only token chunking is ours (``chunking.py``).
On the CPU every level still applies (group offload runs with the CPU as its onload device and no
streams), so tests can check that each level makes the same video as level 0.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers.hooks.layerwise_casting import _LAYERWISE_CASTING_HOOK

from core.memory.chunking import DEFAULT_CHUNK_TOKENS, apply_token_chunking
from core.memory.levels import (
    CHUNKING,
    FP8_STORAGE,
    GROUP_OFFLOAD,
    TEXT_ENCODER_ON_CPU,
    VAE_TILING,
    check_level,
)

log = logging.getLogger(__name__)

CPU = torch.device("cpu")
FP8_STORAGE_DTYPE = torch.float8_e4m3fn
MAPPED_FROM = "_weights_mapped_from"
"""Attribute the low-RAM loader sets on a model whose host weights are views of a mapped file."""


def denoisers(pipe: Any) -> list[torch.nn.Module]:
    """The pipeline's DiT(s): ``transformer`` and, for Wan2.2 A14B, ``transformer_2``."""
    found = [getattr(pipe, name, None) for name in ("transformer", "transformer_2")]
    return [model for model in found if model is not None]


def apply_memory_level(
    pipe: Any, level: int, device: torch.device, *, chunk_tokens: int = DEFAULT_CHUNK_TOKENS
) -> None:
    """Put ``pipe`` (all of it still on the CPU) on ``device`` using memory level ``level``.

    Call once per loaded pipeline: diffusers' casting and offload hooks cannot be taken off again,
    so a different level means loading the pipeline anew.
    """
    level = check_level(level)
    device = torch.device(device)
    for transformer in denoisers(pipe):
        place_transformer(transformer, level, device, chunk_tokens)
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if level >= VAE_TILING:
            vae.enable_tiling()
            vae.enable_slicing()
        vae.to(device)
    encoders = [getattr(pipe, name, None) for name in ("text_encoder", "image_encoder")]
    for encoder in (e for e in encoders if e is not None):  # image to video's CLIP goes with the T5
        encoder.to(CPU if level >= TEXT_ENCODER_ON_CPU else device)
    placed = {id(m) for m in (*denoisers(pipe), vae, *encoders)}
    for component in getattr(pipe, "components", {}).values():
        if isinstance(component, torch.nn.Module) and id(component) not in placed:
            component.to(device)
    log.info("pipeline placed on %s at memory level %d", device, level)


def place_encoders(model: Any, on_gpu: bool, device: torch.device) -> int:
    """From level 2: put a pipeline's text (and image) encoder on ``device`` when the plan keeps it there
    (``MemoryPlan.text_encoder_gpu``), else in RAM; returns how many moved (0 when each already was where
    the plan wants it, as for a second job on the same pipeline). Anything without encoders is left."""
    target = torch.device(device) if on_gpu else CPU
    moved = 0
    for name in ("text_encoder", "image_encoder"):
        encoder = getattr(model, name, None)
        if not isinstance(encoder, torch.nn.Module):
            continue
        if encoder.device != target:  # transformers and diffusers models say where they are
            encoder.to(target)
            moved += 1
    return moved


def has_layerwise_casting(model: torch.nn.Module) -> bool:
    """Whether diffusers' layerwise casting hooks are already on ``model``."""
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_LAYERWISE_CASTING_HOOK) is not None:
            return True
    return False


def place_transformer(
    model: torch.nn.Module, level: int, device: torch.device, chunk_tokens: int = DEFAULT_CHUNK_TOKENS
) -> None:
    """The DiT part of :func:`apply_memory_level` (levels 0-3 leave the DiT whole on ``device``).

    fp8 storage computes in the dtype the model was loaded in (bfloat16 on GPUs, float32 on the CPU);
    a model the low-RAM loader already stored in fp8 (``low_ram_load.py``) keeps its casting hooks.
    Weights mapped from a file (``MAPPED_FROM``) are pinned one group at a time as they are copied
    (diffusers' ``low_cpu_mem_usage``): pinning them up front would copy them all into locked RAM.
    """
    if level >= FP8_STORAGE and not has_layerwise_casting(model):
        model.enable_layerwise_casting(storage_dtype=FP8_STORAGE_DTYPE, compute_dtype=model.dtype)
    if level >= CHUNKING:
        apply_token_chunking(model, chunk_tokens)
    if level < GROUP_OFFLOAD:
        model.to(device)
        return
    streams = device.type == "cuda"
    if not streams:
        log.info("group offload on %s: onload and offload device are the same, so it moves nothing", device)
    model.enable_group_offload(
        onload_device=device,
        offload_device=CPU,
        offload_type="block_level",
        num_blocks_per_group=1,
        use_stream=streams,
        low_cpu_mem_usage=getattr(model, MAPPED_FROM, None) is not None,
    )
