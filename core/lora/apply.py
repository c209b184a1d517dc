"""Put a request's LoRAs into a loaded Wan pipeline through diffusers' Wan LoRA loader.

LoRAs asked to ``fuse`` (the few-step presets' step-distill LoRAs) are merged into the DiT's weights
(``fuse_lora``, then their adapters unloaded) when the weights sit whole in a float dtype: no extra work
per step (unfused, a rank-64 LoRA on every linear of the 14B DiT costs each step its low-rank products).
The others stay adapters, swapped in place when another set comes: hot-swapped (no recompile) on a
compiled DiT, else the old adapters deleted and the new ones loaded. Strength is folded into each file's
tensors (``core.lora.keys``), so a swap only moves tensors and never changes a scaling the compiled graph
captured.

What is loaded is remembered on the pipeline; :func:`lora_variant` is the part of the
:class:`core.device_models.DeviceModels` variant that a swap cannot cover (the fused set, a compiled
DiT's adapter layout), so a different one loads a fresh pipeline.
"""

from __future__ import annotations

import gc
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from diffusers.hooks.group_offloading import _GROUP_OFFLOADING
from diffusers.hooks.layerwise_casting import _LAYERWISE_CASTING_HOOK
from safetensors.torch import load_file

from core.device_models import SPOILED_MARK
from core.lora.keys import check_fits, to_diffusers
from core.lora.library import ResolvedLora
from core.lora.spec import check_experts
from core.memory.apply import denoisers
from core.memory.levels import GROUP_OFFLOAD
from weights.registry import ModelCard

LOADED_MARK = "_video_studio_loras"
FUSED_MARK = "_video_studio_fused_loras"
HOTSWAP_MARK = "_video_studio_lora_hotswap"
WEIGHT_HOOKS = (_GROUP_OFFLOADING, _LAYERWISE_CASTING_HOOK)
"""Memory-level hooks that move or recast the DiT's weights: a LoRA is not merged into such weights."""
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

    @property
    def identity(self) -> tuple[str, float, tuple[str, ...]]:
        """What makes its merged weights: file hash, strength and DiTs."""
        return (self.resolved.sha256, self.resolved.spec.strength, self.into)


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


def lora_variant(prepared: tuple[PreparedLora, ...], compiled: bool, level: int) -> Hashable:
    """The DeviceModels variant part at memory ``level``: the fused LoRAs (merged weights cannot be taken
    out again) and a compiled DiT's adapter layout (a swap keeps it); adapters are otherwise swapped in
    place. From group offload up nothing is merged (:func:`can_merge`), so every LoRA is an adapter there
    and another fused set (or none: the fast mode off) keeps the loaded pipeline."""
    merges = level < GROUP_OFFLOAD
    fused = tuple(p.identity for p in prepared if merges and p.resolved.spec.fuse)
    adapters = tuple(p.layout for p in prepared if not (merges and p.resolved.spec.fuse))
    return (("fused", fused) if fused else ()) + (("hotswap", adapters) if compiled and adapters else ())


def apply_loras(pipe: Any, prepared: tuple[PreparedLora, ...], card: ModelCard, hotswap: bool) -> list[dict]:
    """Make ``pipe``'s DiT(s) carry exactly ``prepared`` (nothing when empty); returns the record entries.

    LoRAs asked to fuse are merged on a pipeline that has none merged yet (:func:`lora_variant` keys the
    loaded pipeline on them), where :func:`can_merge`; the others are adapters. ``hotswap``: the DiT
    will be (or is) compiled, so adapters are prepared for swapping before the first load and later sets
    replace their tensors in place (same layout, guaranteed by :func:`lora_variant`)."""
    components = {
        name: getattr(pipe, name)
        for name in ("transformer", "transformer_2")
        if getattr(pipe, name, None) is not None
    }
    fuse = [p for p in prepared if p.resolved.spec.fuse]
    if fuse and getattr(pipe, FUSED_MARK, None) is None:
        _check_fit(fuse, components, card)
        mergeable = all(can_merge(components[name]) for p in fuse for name in p.into)
        setattr(pipe, FUSED_MARK, _merge(pipe, fuse) if mergeable else ())
    merged = getattr(pipe, FUSED_MARK, None) or ()
    if merged and merged != tuple(p.identity for p in fuse):
        raise RuntimeError("this pipeline has other LoRAs merged into it: load it anew (lora_variant)")
    adapters = tuple(p for p in prepared if not merged or not p.resolved.spec.fuse)
    _load_adapters(pipe, adapters, components, card, hotswap)
    return [p.resolved.record() | {"fused": bool(merged) and p.resolved.spec.fuse} for p in prepared]


def can_merge(model: torch.nn.Module) -> bool:
    """Whether a LoRA can be merged into ``model``'s weights: all in a float dtype, no memory-level hook
    moving or recasting them (group offload, fp8 storage)."""
    if any(param.dtype not in FLOATS for param in model.parameters()):
        return False
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and any(registry.get_hook(name) is not None for name in WEIGHT_HOOKS):
            return False
    return True


def _check_fit(
    prepared: Iterable[PreparedLora], components: dict[str, torch.nn.Module], card: ModelCard
) -> None:
    for prep in prepared:
        for name in prep.into:
            check_fits(prep.resolved.spec.name, prep.state, components[name], card)


def _merge(pipe: Any, fuse: list[PreparedLora]) -> tuple:
    """Merge ``fuse`` into the DiT weights (loaded as adapters, fused, the adapters unloaded). A failure
    may leave the weights half merged: the pipeline is marked spoiled, so the next job loads it anew."""
    gc.unfreeze()
    _unload(pipe)
    names = [f"fused{index}" for index in range(len(fuse))]
    try:
        for name, prep in zip(names, fuse, strict=True):
            for component in prep.into:
                pipe.load_lora_weights(
                    prep.state, adapter_name=name, load_into_transformer_2=component == "transformer_2"
                )
        into = sorted({component for prep in fuse for component in prep.into})
        pipe.fuse_lora(components=into, lora_scale=1.0, adapter_names=names)
        pipe.unload_lora_weights()
    except BaseException:
        setattr(pipe, SPOILED_MARK, True)
        raise
    return tuple(p.identity for p in fuse)


def _load_adapters(
    pipe: Any, prepared: tuple[PreparedLora, ...], components: dict, card: ModelCard, hotswap: bool
) -> None:
    """Make ``prepared`` the pipeline's adapters (unfused LoRAs), swapping them in place when it can."""
    wanted = tuple((p.resolved.slot, p.into) for p in prepared)
    if getattr(pipe, LOADED_MARK, ()) == wanted:
        return
    _check_fit(prepared, components, card)
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
