"""TeaCache for diffusers' ``WanTransformer3DModel``, as stateful diffusers model hooks.

Three hooks share one :class:`~diffusers.hooks.hooks.StateManager`, so every ``cache_context`` ("cond",
"uncond") keeps its own accumulator and residual:

* a probe on ``condition_embedder`` keeps the time embedding ``temb`` of the current call;
* the head hook on ``blocks[0]`` applies :class:`ReuseDecision` to the timestep embedding and either
  returns ``hidden_states + cached residual`` (skipping every block) or runs the blocks;
* the block hooks pass hidden states through while skipping; the tail block stores the new residual.

The first ``warmup_steps`` and the last step of a run are always computed.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, CacheContext, StateManager

from core.caches.config import TeaCacheCalibration
from core.caches.criterion import ReuseDecision

PROBE_HOOK = "teacache_probe"
HEAD_HOOK = "teacache_head"
BLOCK_HOOK = "teacache_block"
HOOK_NAMES = (PROBE_HOOK, HEAD_HOOK, BLOCK_HOOK)


class TeaCacheState(BaseState):
    """Per-branch state: the reuse accumulator, the cached residual and this call's bookkeeping."""

    def __init__(self, threshold: float, coefficients: tuple[float, ...]) -> None:
        self.decision = ReuseDecision(threshold=threshold, coefficients=coefficients)
        self.residual: torch.Tensor | None = None
        self.head_input: torch.Tensor | None = None
        self.temb: torch.Tensor | None = None
        self.should_compute = True
        self.calls = 0

    def reset(self) -> None:
        self.decision.reset()
        self.residual = self.head_input = self.temb = None
        self.should_compute = True
        self.calls = 0


class _TeaCacheHook(ModelHook):
    _is_stateful = True

    def __init__(self, state_manager: StateManager) -> None:
        super().__init__()
        self.state_manager = state_manager

    def state(self) -> TeaCacheState:
        if self.state_manager._context is None:
            self.state_manager.set_context(CacheContext(name="default"))
        return self.state_manager.get_state()

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state_manager.reset()
        return module


class TembProbeHook(_TeaCacheHook):
    """Keeps the time embedding computed by ``condition_embedder`` for the head hook."""

    def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
        self.state().temb = output[0]
        return output


class TeaCacheHeadHook(_TeaCacheHook):
    """Decides per call whether the blocks run; reuses ``hidden_states + residual`` when they do not."""

    def __init__(self, state_manager: StateManager, calibration: TeaCacheCalibration, is_tail: bool) -> None:
        super().__init__(state_manager)
        self.calibration = calibration
        self.is_tail = is_tail

    def new_forward(self, module: torch.nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        state = self.state()
        reuse = self._decide(state, hidden_states, timestep_proj=args[1] if len(args) > 1 else kwargs["temb"])
        state.calls += 1
        state.should_compute = not reuse
        if reuse:
            return hidden_states + state.residual
        output = self.fn_ref.original_forward(hidden_states, *args, **kwargs)
        if self.is_tail:
            state.residual = output - hidden_states
        else:
            state.head_input = hidden_states
        return output

    @torch.compiler.disable
    def _decide(self, state: TeaCacheState, hidden_states: torch.Tensor, timestep_proj: torch.Tensor) -> bool:
        context = self.state_manager.context
        step = context.step_index if context.step_index is not None else state.calls
        total = context.num_inference_steps
        force = step < self.calibration.warmup_steps or (total is not None and step >= total - 1)
        modulation = state.temb if self.calibration.modulation == "temb" else timestep_proj
        reuse = state.decision.should_reuse(modulation, force_compute=force)
        residual = state.residual
        return reuse and residual is not None and residual.shape == hidden_states.shape


class TeaCacheBlockHook(_TeaCacheHook):
    """Passes hidden states through while the head reuses; the tail block stores the fresh residual."""

    def __init__(self, state_manager: StateManager, is_tail: bool) -> None:
        super().__init__(state_manager)
        self.is_tail = is_tail

    def new_forward(self, module: torch.nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        state = self.state()
        if not state.should_compute:
            return hidden_states
        output = self.fn_ref.original_forward(hidden_states, *args, **kwargs)
        if self.is_tail:
            state.residual = output - state.head_input
            state.head_input = None
        return output


def apply_teacache(transformer: torch.nn.Module, calibration: TeaCacheCalibration, threshold: float) -> None:
    """Install TeaCache on a ``WanTransformer3DModel`` with fresh state; undo with :func:`remove_teacache`."""
    manager = StateManager(TeaCacheState, (threshold, calibration.coefficients))
    blocks = list(transformer.blocks)
    if calibration.modulation == "temb":
        _register(transformer.condition_embedder, TembProbeHook(manager), PROBE_HOOK)
    _register(blocks[0], TeaCacheHeadHook(manager, calibration, is_tail=len(blocks) == 1), HEAD_HOOK)
    for index, block in enumerate(blocks[1:], start=1):
        _register(block, TeaCacheBlockHook(manager, is_tail=index == len(blocks) - 1), BLOCK_HOOK)
    HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()


def remove_teacache(transformer: torch.nn.Module) -> None:
    """Remove every TeaCache hook from ``transformer`` and its children."""
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    for name in HOOK_NAMES:
        registry.remove_hook(name, recurse=True)
    registry.invalidate_child_registries_cache()


@torch.no_grad()
def plan_reuse(
    transformer: torch.nn.Module, calibration: TeaCacheCalibration, timesteps: torch.Tensor, threshold: float
) -> list[bool]:
    """Replay the TeaCache decisions of one branch over ``timesteps`` without running any block.

    The criterion only looks at the timestep embedding, so the schedule alone fixes which steps are reused.
    """
    weight = transformer.proj_out.weight
    text = torch.zeros(1, 1, transformer.config.text_dim, device=weight.device, dtype=weight.dtype)
    decision = ReuseDecision(threshold=threshold, coefficients=calibration.coefficients)
    last = len(timesteps) - 1
    plan = []
    for step, t in enumerate(timesteps):
        temb, timestep_proj, _, _ = transformer.condition_embedder(t.reshape(1).to(text.device), text)
        modulation = temb if calibration.modulation == "temb" else timestep_proj
        force = step < calibration.warmup_steps or step >= last
        plan.append(decision.should_reuse(modulation, force_compute=force))
    return plan


def threshold_for_reuse(
    transformer: torch.nn.Module,
    calibration: TeaCacheCalibration,
    timesteps: torch.Tensor,
    fraction: float,
    *,
    upper: float = 10.0,
) -> float:
    """The smallest threshold (to 1e-4, found by bisection) whose replayed plan reuses ``fraction`` of the
    steps; ``upper`` when even that does not (Wan2GP picks its thresholds for a target speed this way)."""

    def reused(threshold: float) -> float:
        return sum(plan_reuse(transformer, calibration, timesteps, threshold)) / len(timesteps)

    if reused(upper) < fraction:
        return upper
    low, high = 0.0, upper
    while high - low > 1e-4:
        middle = (low + high) / 2
        low, high = (middle, high) if reused(middle) < fraction else (low, middle)
    return high


def _register(module: torch.nn.Module, hook: ModelHook, name: str) -> None:
    HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, name)
