"""Per-step hook points of MAGI-1 generation (for chunk reuse such as FlowCache).

For every DiT call of every window step, :func:`core.magi.generate.generate` builds a :class:`StepContext`
(which chunks are in the call, their timesteps, which guidance branch) and asks the hooks which slots to
*reuse* instead of compute. A reused slot needs its velocity and its keys / values in every layer (later
chunks of the same call attend to them), given as :class:`~core.magi.dit.SlotReuse`. After the call the
hooks see the output, and, when ``wants_kv``, the per-layer keys / values of every computed slot, so they
can serve a later reuse.

The decision is meant to be made from cheap per-chunk features: ``context.modulated_input()`` runs
:meth:`core.magi.dit.MagiDiT.modulated_input` (patch embedding, first layer's norm and attention gate) on the
call's slots, once, and caches the result for the call.

Branches: ``"cond"`` (the only one with guidance 1), and with guidance > 1 also ``"null"`` (null caption
with the previous chunks; fills the KV cache) and ``"uncond"`` (each chunk alone, null caption). Prefix
chunks run in branch ``"prefix"`` and are never offered for reuse. Slots whose ``denoising`` flag is False
(a finished chunk forwarded clean for the KV cache, or the duplicate used by the distilled guidance) should
normally be computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from core.magi.dit import DiTOutput, SlotReuse

BRANCHES = ("cond", "null", "uncond", "prefix")


@dataclass
class StepContext:
    """One DiT call: ``chunks[i]`` / ``timesteps[i]`` / ``denoising[i]`` describe slot ``i``."""

    step: int
    total_steps: int
    branch: str
    chunks: tuple[int, ...]
    timesteps: tuple[float, ...]
    denoising: tuple[bool, ...]
    features: Callable[[], list[torch.Tensor]] = field(repr=False, default=list)
    _cached: list[torch.Tensor] | None = field(default=None, repr=False)

    def modulated_input(self) -> list[torch.Tensor]:
        """Per slot ``[B, tokens, hidden]`` timestep-modulated input features (computed once per call)."""
        if self._cached is None:
            self._cached = self.features()
        return self._cached


@runtime_checkable
class MagiStepHooks(Protocol):
    """What :func:`core.magi.generate.generate` calls around every DiT call."""

    wants_kv: bool

    def select_reuse(self, context: StepContext) -> Mapping[int, SlotReuse]:
        """Slot index -> what to use instead of computing that slot; empty to compute all."""

    def after_forward(self, context: StepContext, output: DiTOutput) -> None:
        """Sees every call's velocities (``output.velocity``, slots in order) and, if asked, keys/values."""


class NoStepHooks:
    """Computes every slot."""

    wants_kv = False

    def select_reuse(self, context: StepContext) -> Mapping[int, SlotReuse]:
        return {}

    def after_forward(self, context: StepContext, output: DiTOutput) -> None:
        return None
