"""Put a request's LoRAs into a loaded Wan pipeline through diffusers' Wan LoRA loader, swapping them in
place when another set comes: hot-swapped (no recompile) on a compiled DiT, else the old adapters deleted
and the new ones loaded. Strength is folded into each file's tensors (``core.lora.keys``), so a swap only
moves tensors and never changes a scaling the compiled graph captured.

What is loaded is remembered on the pipeline; :func:`lora_variant` is the part of the
:class:`core.device_models.DeviceModels` variant that a swap cannot cover (a compiled DiT's adapter
layout), so a different layout loads a fresh pipeline.
"""

from __future__ import annotations

import gc
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from safetensors.torch import load_file

from core.lora.keys import check_fits, to_diffusers
from core.lora.library import ResolvedLora
from core.lora.spec import check_experts
from core.memory.apply import denoisers
from weights.registry import ModelCard

LOADED_MARK = "_video_studio_loras"
HOTSWAP_MARK = "_video_studio_lora_hotswap"
MIN_TARGET_RANK = 64
FLOATS = (torch.bfloat16, torch.float16, torch.float32)


Layout = tuple[tuple[str, ...], frozenset[str], int]
"""The DiTs a LoRA goes into, the modules it touches and its rank: what a hot-swap must keep the same."""
_LAYOUTS: dict[tuple[str, str, tuple[str, ...]], Layout] = {}
"""Layouts of files read before, by (SHA-256, card, DiTs): a job whose LoRAs the pipeline already carries
reads no file (converting a 14B rank-64 LoRA takes about a second)."""


@dataclass(frozen=True)
class PreparedLora:
    """A resolved LoRA, the DiTs it goes into and its layout; its tensors are read when first needed."""

    resolved: ResolvedLora
    into: tuple[str, ...]
    layout: Layout

    @cached_property
    def state(self) -> dict[str, torch.Tensor]:
        """The file's tensors in diffusers form, strength folded in."""
        return _read(self.resolved)


def _read(resolved: ResolvedLora) -> dict[str, torch.Tensor]:
    """``resolved``'s file converted to diffusers keys, strength folded in (a clear error if unknown)."""
    return to_diffusers(load_file(str(resolved.path)), resolved.spec.strength)


def targets(expert: str, two_experts: bool) -> tuple[str, ...]:
    """The pipeline components a LoRA of ``expert`` goes into."""
    if not two_experts:
        return ("transformer",)
    return {"high": ("transformer",), "low": ("transformer_2",)}.get(expert, ("transformer", "transformer_2"))


def _layout(state: dict[str, torch.Tensor], into: tuple[str, ...]) -> Layout:
    modules = frozenset(k.split(".lora_")[0] for k in state)
    ranks = [v.shape[0] for k, v in state.items() if k.endswith("lora_A.weight")]
    return (into, modules, max(ranks, default=0))


def _prepare(resolved: ResolvedLora, into: tuple[str, ...], card: ModelCard) -> PreparedLora:
    key = (resolved.sha256, card.id, into)
    if key in _LAYOUTS:
        return PreparedLora(resolved, into, _LAYOUTS[key])
    state = _read(resolved)
    prepared = PreparedLora(resolved, into, _layout(state, into))
    prepared.__dict__["state"] = state  # read already: the first load uses it
    _LAYOUTS[key] = prepared.layout
    return prepared


def prepare_loras(loras: tuple[ResolvedLora, ...], card: ModelCard) -> tuple[PreparedLora, ...]:
    """Each file's layout (the file read and converted the first time, with a clear error for a file in no
    known format); the tensors themselves are read when a pipeline needs them."""
    two = bool(card.arch and card.arch.experts > 1)
    check_experts(tuple(r.spec for r in loras), two, card.name)
    return tuple(_prepare(r, targets(r.spec.expert, two), card) for r in loras)


def lora_variant(prepared: tuple[PreparedLora, ...], compiled: bool) -> Hashable:
    """The DeviceModels variant part: a compiled DiT's adapter layout (a swap keeps it), else nothing
    (adapters are deleted and loaded in place)."""
    if not compiled or not prepared:
        return ()
    return ("hotswap", tuple(p.layout for p in prepared))


def apply_loras(pipe: Any, prepared: tuple[PreparedLora, ...], card: ModelCard, hotswap: bool) -> list[dict]:
    """Make ``pipe``'s DiT(s) carry exactly ``prepared`` (nothing when empty); returns the record entries.

    ``hotswap``: the DiT will be (or is) compiled, so adapters are prepared for swapping before the first
    load and later sets replace their tensors in place (same layout, guaranteed by :func:`lora_variant`)."""
    wanted = tuple((p.resolved.slot, p.into) for p in prepared)
    if getattr(pipe, LOADED_MARK, ()) == wanted:
        return [p.resolved.record() for p in prepared]
    components = {
        name: getattr(pipe, name)
        for name in ("transformer", "transformer_2")
        if getattr(pipe, name, None) is not None
    }
    for prep in prepared:
        for name in prep.into:
            check_fits(prep.resolved.spec.name, prep.state, components[name], card)
    gc.unfreeze()  # the adapters replaced here were frozen after an earlier job: let them be collected
    swapping = hotswap and getattr(pipe, HOTSWAP_MARK, False) and bool(getattr(pipe, LOADED_MARK, ()))
    if not swapping:
        _unload(pipe)
        if hotswap and prepared:
            rank = max(MIN_TARGET_RANK, *(p.layout[2] for p in prepared))
            pipe.enable_lora_hotswap(target_rank=rank)
            setattr(pipe, HOTSWAP_MARK, True)
    for index, prep in enumerate(prepared):
        for name in prep.into:
            pipe.load_lora_weights(
                prep.state,
                adapter_name=f"lora{index}",
                hotswap=swapping,
                load_into_transformer_2=name == "transformer_2",
            )
    if not swapping:
        for name, model in components.items():
            names = [f"lora{i}" for i, p in enumerate(prepared) if name in p.into]
            if names:
                model.set_adapters(names, [1.0] * len(names))
    for model in denoisers(pipe):
        _lora_params_to_compute_dtype(model)
    setattr(pipe, LOADED_MARK, wanted)
    return [p.resolved.record() for p in prepared]


def _unload(pipe: Any) -> None:
    if getattr(pipe, LOADED_MARK, ()):
        pipe.unload_lora_weights()
    setattr(pipe, LOADED_MARK, ())


def _lora_params_to_compute_dtype(model: torch.nn.Module) -> None:
    """PEFT gives new adapters the base layer's dtype; under fp8 storage (memory level 5) that is fp8,
    which cannot multiply: keep adapters in the compute dtype (they are small)."""
    compute = next((p.dtype for p in model.parameters() if p.dtype in FLOATS), None)
    if compute is None:
        return
    for name, param in model.named_parameters():
        if ".lora_" in name and param.dtype not in FLOATS:
            param.data = param.data.to(compute)
