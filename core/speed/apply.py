"""Turn the chosen speed options on for a loaded pipeline and say what ran and why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.memory.apply import denoisers
from core.speed.attention import pick_turbo_attention, resolve_attention, use_attention_backend
from core.speed.compile import announce_first_call, compile_blocks, should_compile, use_compile_cache
from core.speed.config import SpeedConfig
from core.speed.fp8 import fp8_unavailable, quantize_linears_fp8
from core.speed.gelu_epilogue import MAX_IN_FEATURES, fuse_gelu_epilogues

APPLIED_MARK = "_video_studio_speed"
WEIGHT_HOOKS = {"layerwise_casting", "group_offloading", "lazy_prefetch_group_offloading"}
"""diffusers hooks (memory levels' fp8 storage and offload) that move or recast weights on every call."""


def hook_names(model: Any) -> set[str]:
    """Names of the diffusers hooks on ``model`` and its submodules (memory levels add them)."""
    names: set[str] = set()
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            names.update(registry.hooks)
    return names


def apply_speed(
    pipe: Any,
    config: SpeedConfig,
    device: torch.device,
    *,
    models_dir: Path | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Apply ``config`` to ``pipe``'s DiT(s) in place, once per loaded pipeline.

    Returns a JSON-ready record for the video's metadata: per option ``on`` and ``reason``. Options that
    cannot run here are reported off with the reason. ``models_dir`` holds the compile cache; ``report``
    hears the stage name :data:`core.speed.compile.COMPILE_STAGE` when the first (compiling) call starts.
    A second call on the same pipeline changes nothing and returns the first record (reload to change).
    """
    models = denoisers(pipe)
    applied = getattr(models[0], APPLIED_MARK, None) if models else None
    if applied is not None:
        return applied

    attention = resolve_attention(config.attention, device)
    turbo_backend, fp8_attention = _turbo_attention(config, device)
    if turbo_backend is not None:
        attention = attention._replace(name=turbo_backend, reason="Turbo: " + fp8_attention["reason"])
    hooks = set().union(*(hook_names(model) for model in models))
    fp8_linears = _fp8_linears(config, device, hooks & WEIGHT_HOOKS)
    gelu_epilogue = _gelu_epilogue(config, device, hooks, fp8_linears["on"])
    compile_on, compile_reason = should_compile(config.compile, device)
    # graph breaks allowed: the memory levels' hooks break the graph, and a step cache's hooks go into the
    # compiled blocks after this (TeaCache decides outside the graph), job by job
    fullgraph = False
    if compile_on and hooks:
        compile_reason += "; graph breaks at the memory level's hooks (" + ", ".join(sorted(hooks)) + ")"

    if compile_on and models_dir is not None:
        compile_reason += f"; cache in {use_compile_cache(models_dir)}"
    compiled_blocks = 0
    for model in models:
        use_attention_backend(model, attention.name)
        if fp8_linears["on"]:
            fp8_linears["count"] = fp8_linears.get("count", 0) + quantize_linears_fp8(model)
        if gelu_epilogue["on"]:
            gelu_epilogue["count"] = gelu_epilogue.get("count", 0) + fuse_gelu_epilogues(model)
        if compile_on:
            compiled_blocks += compile_blocks(model, fullgraph=fullgraph)
    if gelu_epilogue.get("count") == 0:
        wider = f"no FFN of input width <= {MAX_IN_FEATURES} (wider ones measured no faster)"
        gelu_epilogue.update(on=False, reason=wider)
    if compile_on and report is not None and models:
        announce_first_call(models[0], report)

    record = {
        "attention": {"on": attention.name, "backend": attention.backend, "reason": attention.reason},
        "compile": {"on": compile_on, "reason": compile_reason, "blocks": compiled_blocks},
        "fp8_linears": fp8_linears,
        "fp8_attention": fp8_attention,
        "gelu_epilogue": gelu_epilogue,
        "turbo": config.turbo,
        "lossless": not (fp8_linears["on"] or fp8_attention["on"]),
    }
    for model in models:
        setattr(model, APPLIED_MARK, record)
    return record


def _fp8_linears(config: SpeedConfig, device: torch.device, weight_hooks: set[str]) -> dict[str, Any]:
    if not config.wants_fp8_linears:
        return {"on": False, "reason": "not asked for (lossy; part of Turbo)"}
    why_not = fp8_unavailable(device)
    if why_not is None and weight_hooks:
        why_not = f"the memory level's hooks ({', '.join(sorted(weight_hooks))}) already manage the weights"
    return {"on": why_not is None, "reason": why_not or "fp8 rowwise, dynamic activation scales (torchao)"}


def _gelu_epilogue(
    config: SpeedConfig, device: torch.device, hooks: set[str], fp8_on: bool
) -> dict[str, Any]:
    why_not = None
    if not config.gelu_epilogue:
        why_not = "turned off"
    elif device.type != "cuda":
        why_not = f"the fused GEMM epilogue is cuBLASLt's (running on {device.type})"
    elif fp8_on:
        why_not = "fp8 linears run their own GEMMs"
    elif hooks:
        why_not = f"the memory level's hooks ({', '.join(sorted(hooks))}) wrap the linears"
    fused = f"bias + tanh GELU in the epilogue of FFN GEMMs of input width <= {MAX_IN_FEATURES}"
    return {"on": why_not is None, "reason": why_not or fused}


def _turbo_attention(config: SpeedConfig, device: torch.device) -> tuple[str | None, dict[str, Any]]:
    if not config.turbo:
        return None, {"on": False, "reason": "not asked for (lossy; part of Turbo)"}
    backend, reason = pick_turbo_attention(device)
    return backend, {"on": backend is not None, "reason": reason}
