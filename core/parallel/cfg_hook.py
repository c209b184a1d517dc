"""CFG parallel: the cond and uncond transformer calls of a step run on two ranks at once.

Pipelines call the transformer twice per step, inside ``cache_context("cond")`` and then
``cache_context("uncond")``. With this hook the cond rank computes only the cond call and the uncond rank only
the uncond call; on the uncond call both ranks swap results with one ``all_gather``. The uncond rank returned
an empty tensor for its cond call and fills it in place then, so the pipeline on every rank holds identical
noise predictions when it combines them, and every rank steps identical latents.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager
from diffusers.models.modeling_outputs import Transformer2DModelOutput

HOOK_NAME = "cfg_parallel"
BRANCHES = ("cond", "uncond")


class _NoState(BaseState):
    """The hook keeps no per-context state; its StateManager only carries the pipeline's cache context."""

    def reset(self) -> None:
        pass


class CFGParallelHook(ModelHook):
    """Runs the transformer only for this rank's branch and all-gathers the other branch's output."""

    _is_stateful = True

    def __init__(self, group: dist.ProcessGroup, branch_rank: int) -> None:
        super().__init__()
        if branch_rank not in (0, 1):
            raise ValueError(f"CFG parallel has two branches; rank {branch_rank} is not one of them")
        self.group = group
        self.branch = BRANCHES[branch_rank]
        self.state_manager = StateManager(_NoState)
        self.pending: torch.Tensor | None = None

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        context = self.state_manager._context
        if context is None or context.name not in BRANCHES:
            return self.fn_ref.original_forward(*args, **kwargs)
        return_dict = kwargs.get("return_dict", True)
        if context.name == "cond":
            if self.branch == "cond":
                self.pending = _sample(self.fn_ref.original_forward(*args, **kwargs))
            else:
                self.pending = _empty_output(module, args, kwargs)
            return _wrap(self.pending, return_dict)
        if self.pending is None:
            raise RuntimeError("CFG parallel: uncond call without a cond call before it in this step")
        if self.branch == "uncond":
            mine = _sample(self.fn_ref.original_forward(*args, **kwargs))
        else:
            mine = self.pending
        gathered = [torch.empty_like(mine) for _ in BRANCHES]
        dist.all_gather(gathered, mine.contiguous(), group=self.group)
        if self.branch == "uncond":
            self.pending.copy_(gathered[0])
        self.pending = None
        return _wrap(mine if self.branch == "uncond" else gathered[1], return_dict)

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state_manager.reset()
        self.pending = None
        return module


def _sample(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.sample


def _wrap(tensor: torch.Tensor, return_dict: bool) -> Any:
    return Transformer2DModelOutput(sample=tensor) if return_dict else (tensor,)


def _empty_output(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    """An uninitialised tensor shaped like the transformer's output for this input (filled later)."""
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    channels = module.config.out_channels or hidden.shape[1]
    return hidden.new_empty((hidden.shape[0], channels, *hidden.shape[2:]))


def apply_cfg_parallel(module: torch.nn.Module, group: dist.ProcessGroup, branch_rank: int) -> None:
    """Register :class:`CFGParallelHook` on ``module`` (outermost, so it sees the full output)."""
    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(CFGParallelHook(group, branch_rank), HOOK_NAME)


def remove_cfg_parallel(module: torch.nn.Module) -> None:
    """Take the :class:`CFGParallelHook` off ``module`` again."""
    HookRegistry.check_if_exists_or_initialize(module).remove_hook(HOOK_NAME, recurse=False)
