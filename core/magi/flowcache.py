"""FlowCache chunk-wise reuse for MAGI-1, as :class:`~core.magi.hooks.MagiStepHooks`.

Every chunk of the denoising window keeps its own decision, per guidance branch: the relative L1 change of
the chunk's modulated input (:meth:`~core.magi.hooks.StepContext.modulated_input`) since its previous step,
optionally rescaled by a fitted polynomial, is accumulated (the TeaCache rule of
:class:`core.caches.criterion.ReuseDecision`); while the sum stays under ``threshold`` the chunk is not
computed: its velocity and its per-layer keys / values from its last computed step stand in (the chunks
computed beside it attend to those). The first ``warmup`` steps of every chunk are always computed.

As in the published MAGI-1 code, the distilled recipe's "nearly clean chunk alone" duplicate is reused
together with its chunk; finished chunks forwarded clean for the KV cache are always computed. Unlike the
published code the cached quantity is the velocity, not the latent update, so a reused step integrates with
its own step size. Published MAGI-1 setting: threshold 0.01, warm-up 5 (on the patch embedding).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.caches.criterion import ReuseDecision
from core.magi.dit import DiTOutput, SlotReuse
from core.magi.hooks import StepContext
from core.magi.kv_cache import KV
from core.validation import ConfigError, as_float, as_int


@dataclass(frozen=True)
class FlowCacheConfig:
    """``threshold`` 0 computes everything; ``warmup`` steps per chunk are always computed."""

    threshold: float = 0.01
    warmup: int = 5
    coefficients: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", as_float("flowcache threshold", self.threshold, low=0, high=10))
        object.__setattr__(self, "warmup", as_int("flowcache warmup", self.warmup, low=0, high=1000))
        if not isinstance(self.coefficients, Sequence) or isinstance(self.coefficients, str):
            raise ConfigError("flowcache coefficients must be a list of numbers (highest power first)")
        coefficients = tuple(as_float("flowcache coefficient", c) for c in self.coefficients)
        object.__setattr__(self, "coefficients", coefficients)


@dataclass
class _ChunkState:
    decision: ReuseDecision
    steps: int = 0
    saved: SlotReuse | None = None
    alone: SlotReuse | None = None


@dataclass
class _RunPosition:
    step: int = -2
    branches: set[str] = field(default_factory=set)

    def starts_new_run(self, context: StepContext) -> bool:
        """True when ``context`` cannot follow the calls seen so far (a new generation began)."""
        if context.step < self.step or (context.step == self.step and context.branch in self.branches):
            return True
        if context.step > self.step:
            self.step, self.branches = context.step, set()
        self.branches.add(context.branch)
        return False


class FlowCache:
    """Chunk-wise reuse hooks for :func:`core.magi.generate.generate`; state resets with each new run."""

    def __init__(self, config: FlowCacheConfig) -> None:
        self.config = config
        self.wants_kv = False
        self.reset()

    def reset(self) -> None:
        """Forget every chunk and the counts, as before a run."""
        self._branches: dict[str, dict[int, _ChunkState]] = {}
        self._position = _RunPosition()
        self._save: set[int] = set()
        self._counts: Counter[str] = Counter()
        self.wants_kv = False

    def select_reuse(self, context: StepContext) -> Mapping[int, SlotReuse]:
        if self._position.starts_new_run(context):
            self.reset()
            self._position.starts_new_run(context)
        states = self._branches.setdefault(context.branch, {})
        window = [c for c, denoising in zip(context.chunks, context.denoising, strict=True) if denoising]
        for old in [c for c in states if window and c < min(window)]:
            del states[old]
        reuse: dict[int, SlotReuse] = {}
        self._save = set()
        for position, chunk in enumerate(context.chunks):
            if not context.denoising[position]:
                continue
            state = states.setdefault(chunk, _ChunkState(self._decision()))
            if self._reuses(context, position, state):
                reuse[position] = state.saved
                self._counts["chunk_steps_reused"] += 1
            else:
                self._counts["chunk_steps_computed"] += 1
                state.saved = None  # recomputed now: free its old velocity and keys / values first
                if state.steps + 1 >= self.config.warmup and self.config.threshold > 0:
                    self._save.add(position)
            state.steps += 1
        self._pair_alone_slots(context, states, reuse)
        self.wants_kv = bool(self._save)
        return reuse

    def _decision(self) -> ReuseDecision:
        return ReuseDecision(self.config.threshold, self.config.coefficients)

    def _reuses(self, context: StepContext, position: int, state: _ChunkState) -> bool:
        if self.config.threshold <= 0:
            return False
        features = context.modulated_input()[position]
        warm = state.steps < self.config.warmup
        return state.decision.should_reuse(features, force_compute=warm or state.saved is None)

    def _pair_alone_slots(
        self, context: StepContext, states: dict[int, _ChunkState], reuse: dict[int, SlotReuse]
    ) -> None:
        """A chunk's "alone" duplicate (not denoising, after its twin) follows its twin's decision."""
        for position, chunk in enumerate(context.chunks):
            twins = [p for p in range(position) if context.chunks[p] == chunk and context.denoising[p]]
            if context.denoising[position] or not twins:
                continue
            state = states[chunk]
            if twins[0] in reuse and state.alone is not None:
                reuse[position] = state.alone
                continue
            state.alone = None
            if twins[0] in reuse or twins[0] in self._save:
                self._save.add(position)

    def after_forward(self, context: StepContext, output: DiTOutput) -> None:
        if context.branch == "prefix" or not self._save:
            return
        states = self._branches[context.branch]
        width = output.velocity.shape[2] // len(context.chunks)
        for position in self._save:
            saved = SlotReuse(
                output=output.velocity[:, :, position * width : (position + 1) * width].clone(),
                kv=_detached(output.kv[position]),
            )
            state = states[context.chunks[position]]
            if context.denoising[position]:
                state.saved = saved
            else:
                state.alone = saved
        self._save = set()
        self.wants_kv = False

    def stats(self) -> dict[str, float | int]:
        """Chunk-steps computed and reused over the last run (denoising chunks of every branch)."""
        computed = self._counts["chunk_steps_computed"]
        reused = self._counts["chunk_steps_reused"]
        total = computed + reused
        return {
            "chunk_steps_computed": computed,
            "chunk_steps_reused": reused,
            "reuse_ratio": round(reused / total, 4) if total else 0.0,
            "flowcache_threshold": self.config.threshold,
            "flowcache_warmup": self.config.warmup,
        }


def _detached(kv: list[KV]) -> list[KV]:
    """Own copies of one slot's per-layer keys / values (not views into the whole call's tensors)."""
    return [(key.clone(), value.clone()) for key, value in kv]
