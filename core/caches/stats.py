"""Counting what a step cache did: forwards per branch, how many ran the blocks, and their wall time.

Two hooks share one :class:`StateManager` (only for its ``cache_context`` name, which says the branch):
a counter on the last block's self-attention, registered *before* any cache hook so it sits innermost
and only sees real computations, and an observer on the transformer that times each forward and
checks whether the counter moved during it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

OBSERVER_HOOK = "cache_stats_observer"
COUNTER_HOOK = "cache_stats_counter"


@dataclass
class BranchStats:
    """Forwards of one transformer in one branch ("cond"/"uncond")."""

    computed: int = 0
    reused: int = 0
    computed_seconds: float = 0.0
    reused_seconds: float = 0.0


class _NoState(BaseState):
    def reset(self) -> None:
        """Nothing to reset: the counts live in :class:`StepCounter` for the whole session."""


class StepCounter:
    """Stats of one transformer, keyed by branch name. The block runs are counted in a tensor on the
    blocks' device: a compiled block adds to it inside its graph, where a Python int would be a constant
    dynamo guards on and recompiles for at every count (until its recompile limit fails the run)."""

    def __init__(self, device: torch.device | None = None, counts_blocks: bool = True) -> None:
        self.branches: dict[str, BranchStats] = {}
        self.counts_blocks = counts_blocks
        """False: no step cache runs, so every forward runs the blocks and no hook counts them (a hook
        registered inside a compiled block makes each job recompile it)."""
        self.runs = torch.zeros((), dtype=torch.int64, device=device)
        self.manager = StateManager(_NoState)
        self.on_steps: Callable[[int], None] | None = None

    @property
    def block_runs(self) -> int:
        return int(self.runs)

    def branch(self) -> str:
        context = self.manager._context
        return context.name if context is not None else "default"


class _CounterHook(ModelHook):
    _is_stateful = True

    def __init__(self, counter: StepCounter) -> None:
        super().__init__()
        self.counter = counter
        self.state_manager = counter.manager

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        return module


class BlockRunCounterHook(_CounterHook):
    """Counts real runs of the module it sits on."""

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any):
        self.counter.runs.add_(1)
        return args, kwargs


class ForwardObserverHook(_CounterHook):
    """Times each transformer forward and files it as computed or reused under its branch."""

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any):
        context = self.counter.manager._context
        if self.counter.on_steps is not None and context is not None and context.num_inference_steps:
            self.counter.on_steps(context.num_inference_steps)
        runs_before = self.counter.block_runs
        _synchronize(args, kwargs)
        start = time.perf_counter()
        output = self.fn_ref.original_forward(*args, **kwargs)
        _synchronize(args, kwargs)
        seconds = time.perf_counter() - start
        stats = self.counter.branches.setdefault(self.counter.branch(), BranchStats())
        if not self.counter.counts_blocks or self.counter.block_runs > runs_before:
            stats.computed += 1
            stats.computed_seconds += seconds
        else:
            stats.reused += 1
            stats.reused_seconds += seconds
        return output


def install_counter(transformer: torch.nn.Module, count_blocks: bool = True) -> StepCounter:
    """Attach a fresh :class:`StepCounter` to ``transformer`` (before any cache hook); ``count_blocks``
    False (no step cache: every forward computes) leaves the blocks without a hook."""
    tail = transformer.blocks[-1].attn1
    weight = next(tail.parameters(), None)
    device = weight.device if weight is not None and weight.device.type != "meta" else None
    counter = StepCounter(device, counts_blocks=count_blocks)
    if count_blocks:
        tail_attention = HookRegistry.check_if_exists_or_initialize(tail)
        tail_attention.register_hook(BlockRunCounterHook(counter), COUNTER_HOOK)
    root = HookRegistry.check_if_exists_or_initialize(transformer)
    root.register_hook(ForwardObserverHook(counter), OBSERVER_HOOK)
    root.invalidate_child_registries_cache()
    return counter


def remove_counter(transformer: torch.nn.Module) -> None:
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.remove_hook(OBSERVER_HOOK, recurse=True)
    registry.remove_hook(COUNTER_HOOK, recurse=True)
    registry.invalidate_child_registries_cache()


def summarize(counters: dict[str, StepCounter]) -> dict[str, Any]:
    """Totals, per-branch counts (``"transformer/cond"``...) and an estimate of the time saved.

    The estimate is ``reused forwards x (mean computed forward - mean reused forward)`` per transformer.
    """
    computed = reused = 0
    saved = 0.0
    branches: dict[str, dict[str, int]] = {}
    for name, counter in counters.items():
        stats = list(counter.branches.values())
        n_computed = sum(s.computed for s in stats)
        n_reused = sum(s.reused for s in stats)
        if n_computed and n_reused:
            mean_computed = sum(s.computed_seconds for s in stats) / n_computed
            mean_reused = sum(s.reused_seconds for s in stats) / n_reused
            saved += n_reused * max(mean_computed - mean_reused, 0.0)
        computed += n_computed
        reused += n_reused
        for branch, s in counter.branches.items():
            branches[f"{name}/{branch}"] = {"steps_computed": s.computed, "steps_reused": s.reused}
    total = computed + reused
    return {
        "steps_computed": computed,
        "steps_reused": reused,
        "reuse_fraction": reused / total if total else 0.0,
        "estimated_seconds_saved": round(saved, 3),
        "branches": branches,
    }


def _synchronize(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    tensor = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
    if tensor is not None and tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
