"""Chunk-wise reuse for SkyReels-V2 Diffusion Forcing (the FlowCache idea), as diffusers hooks.

Diffusion forcing denoises the chunks (causal blocks of latent frames) of a window at different noise
levels in one transformer call. Each chunk keeps its own cache decision, per guidance branch: the relative
L1 change of the chunk's timestep-modulated input (the time projection the blocks are modulated with)
since the previous call, optionally rescaled by a polynomial fitted per model, is accumulated; while the
sum stays under ``threshold`` the chunk reuses the residual its transformer blocks produced last time,
otherwise it is recomputed and the sum restarts. The first ``warmup`` changing calls of a chunk and its
last denoising step are always computed.

Chunks to recompute go through the blocks together. With causal attention (``causal_block_size`` > 1)
a chunk only sees itself and earlier chunks, so the blocks run on the tokens up to the last chunk that
needs computing and every later chunk is reused exactly as decided. With full attention every token sees
every other, so a call either runs all tokens or none. Unlike the paper there is no KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

ROOT_HOOK = "chunk_cache_root"
BLOCK_HOOK = "chunk_cache_block"
BLOCK_ARGS = ("hidden_states", "encoder_hidden_states", "temb", "rotary_emb", "attention_mask")


@dataclass
class ChunkStats:
    """What the cache did over a session."""

    chunk_steps_computed: int = 0
    chunk_steps_reused: int = 0
    calls: int = 0
    calls_skipped: int = 0
    tokens_computed: int = 0
    tokens_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        total = self.chunk_steps_computed + self.chunk_steps_reused
        return {
            "chunk_steps_computed": self.chunk_steps_computed,
            "chunk_steps_reused": self.chunk_steps_reused,
            "reuse_ratio": round(self.chunk_steps_reused / total, 4) if total else 0.0,
            "calls": self.calls,
            "calls_skipped": self.calls_skipped,
            "token_fraction_computed": (
                round(self.tokens_computed / self.tokens_total, 4) if self.tokens_total else 1.0
            ),
        }


@dataclass
class _Chunk:
    accumulated: float = 0.0
    changes: int = 0


@dataclass
class _BranchState(BaseState):
    """Per guidance branch ("cond"/"uncond"): chunk trackers, the residual and this call's plan."""

    chunks: list[_Chunk] = field(default_factory=list)
    layout: tuple[int, ...] | None = None
    last_timesteps: torch.Tensor | None = None
    last_modulated: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    block_input: torch.Tensor | None = None
    span_tokens: int = 0
    total_tokens: int = 0

    def reset(self) -> None:
        self.chunks, self.layout, self.last_timesteps, self.last_modulated = [], None, None, None
        self.residual = self.block_input = None
        self.span_tokens = self.total_tokens = 0


class _Policy:
    """The per-chunk compute-or-reuse rule."""

    def __init__(self, threshold: float, warmup: int, coefficients: Sequence[float] | None) -> None:
        self.threshold = threshold
        self.warmup = warmup
        self.coefficients = tuple(coefficients or ())

    def rescale(self, distance: float) -> float:
        """The fitted polynomial of ``distance``; where it is not positive (outside the range it was fitted
        on) the raw distance counts instead, so a large change can never lower the sum."""
        value = 0.0
        for coefficient in self.coefficients:
            value = value * distance + coefficient
        return value if value > 0 else distance

    def decide(self, chunk: _Chunk, distance: float | None, last_step: bool) -> bool:
        """True to compute the chunk now (``distance`` None: nothing to compare with); updates its tracker."""
        if distance is None or self.threshold <= 0:
            return True
        if distance > 0:
            chunk.changes += 1
            if chunk.changes <= self.warmup or last_step:
                return True
            chunk.accumulated += self.rescale(distance)
        return chunk.accumulated >= self.threshold


class _RootHook(ModelHook):
    """On the transformer: reads the timesteps of this call and plans which chunks to compute."""

    _is_stateful = True

    def __init__(self, state_manager: StateManager, policy: _Policy, stats: ChunkStats, pipe: Any) -> None:
        super().__init__()
        self.state_manager = state_manager
        self.policy = policy
        self.stats = stats
        self.pipe = pipe

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state_manager.reset()
        return module

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        state: _BranchState = self.state_manager.get_state()
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = module.config.patch_size
        chunk_frames = max(1, module.config.num_frame_per_block)
        tokens_per_frame = (height // p_h) * (width // p_w)
        frames //= p_t
        layout = (frames, tokens_per_frame, chunk_frames)
        if timestep.dim() < 2:
            timestep = timestep.reshape(timestep.shape[0], -1).expand(-1, frames)
        restarted = layout != state.layout or bool((timestep > state.last_timesteps).any())
        if restarted:
            state.reset()
            state.layout = layout
            state.chunks = [_Chunk() for _ in range(frames // chunk_frames)]
        state.last_timesteps = timestep.detach().clone()
        count = len(state.chunks)
        modulated = _modulated_input(module, timestep, kwargs.get("fps")).unflatten(1, (count, chunk_frames))
        distances: list[float | None] = [None] * count
        if state.last_modulated is not None:
            change = (modulated - state.last_modulated).abs().mean(dim=(0, 2, 3))
            scale = state.last_modulated.abs().mean(dim=(0, 2, 3)).clamp_min(1e-12)
            distances = (change / scale).tolist()
        state.last_modulated = modulated
        final = int(self.pipe.scheduler.timesteps[-1]) if self.pipe.scheduler.timesteps is not None else -1
        chunk_timesteps = timestep.unflatten(1, (count, chunk_frames)).amax(dim=(0, 2)).tolist()
        plan = [
            self.policy.decide(chunk, distance, int(t) == final)
            for chunk, distance, t in zip(state.chunks, distances, chunk_timesteps, strict=True)
        ]
        if not any(plan):
            span = 0
        elif chunk_frames > 1:
            span = max(i for i, compute in enumerate(plan) if compute) + 1
        else:
            span = len(plan)
        for chunk in state.chunks[:span]:
            chunk.accumulated = 0.0
        state.total_tokens = frames * tokens_per_frame
        state.span_tokens = span * chunk_frames * tokens_per_frame
        self.stats.calls += 1
        self.stats.calls_skipped += span == 0
        self.stats.chunk_steps_computed += span
        self.stats.chunk_steps_reused += len(plan) - span
        self.stats.tokens_computed += state.span_tokens
        self.stats.tokens_total += state.total_tokens
        return args, kwargs


class _BlockHook(ModelHook):
    """On each transformer block: runs it on the planned tokens; the last block fills in reused chunks."""

    _is_stateful = True

    def __init__(self, state_manager: StateManager, first: bool, last: bool) -> None:
        super().__init__()
        self.state_manager = state_manager
        self.first = first
        self.last = last

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state_manager.reset()
        return module

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        bound = dict(zip(BLOCK_ARGS, args, strict=False)) | kwargs
        state: _BranchState = self.state_manager.get_state()
        span, total = state.span_tokens, state.total_tokens
        hidden_states = bound["hidden_states"]
        if self.first:
            state.block_input = hidden_states
            hidden_states = hidden_states[:, :span] if span < total else hidden_states
        if span > 0:
            if span < total:
                bound = _slice_block_args(bound, span)
            bound["hidden_states"] = hidden_states
            hidden_states = self.fn_ref.original_forward(**bound)
        return self._assemble(state, hidden_states) if self.last else hidden_states

    @staticmethod
    def _assemble(state: _BranchState, computed: torch.Tensor) -> torch.Tensor:
        span, full_input = state.span_tokens, state.block_input
        if span == state.total_tokens:
            state.residual = computed - full_input
            return computed
        output = full_input + state.residual
        if span > 0:
            state.residual[:, :span] = computed - full_input[:, :span]
            output[:, :span] = computed
        return output


def _slice_block_args(bound: dict[str, Any], span: int) -> dict[str, Any]:
    """The block's per-token inputs cut to the first ``span`` tokens."""
    temb, rotary, mask = bound["temb"], bound["rotary_emb"], bound["attention_mask"]
    if temb.dim() == 4:
        temb = temb[:, :, :span]
    if rotary is not None:
        rotary = tuple(r[:, :span] for r in rotary)
    if mask is not None:
        mask = mask[..., :span, :span]
    return bound | {"temb": temb, "rotary_emb": rotary, "attention_mask": mask}


def _modulated_input(module: torch.nn.Module, timestep: torch.Tensor, fps: Any) -> torch.Tensor:
    """The per-frame time projection (batch, frames, 6 * dim) the blocks are modulated with.

    Computed where the embedder's weights are, which may not be the device yet under CPU offloading, and in
    each layer's own dtype (diffusers keeps the time embedder in float32 beside a bf16 projection)."""
    embedder = module.condition_embedder
    weight = next(embedder.time_embedder.parameters())
    projected = embedder.timesteps_proj(timestep.to(weight.device))
    temb = embedder.time_embedder(projected.to(weight.dtype))
    projection = embedder.time_proj
    modulated = projection(embedder.act_fn(temb).to(projection.weight.dtype)).float()
    if module.config.inject_sample_info and fps is not None:
        fps_ids = torch.as_tensor(fps, dtype=torch.long, device=weight.device)
        modulated = modulated + module.fps_projection(module.fps_embedding(fps_ids)).float()[:, None]
    return modulated


class ChunkCacheSession:
    """Context manager that installs the chunk cache on ``pipe.transformer`` and removes it on exit."""

    def __init__(
        self, pipe: Any, threshold: float, warmup: int, coefficients: Sequence[float] | None
    ) -> None:
        self.pipe = pipe
        self.policy = _Policy(threshold, warmup, coefficients)
        self._stats = ChunkStats()

    def __enter__(self) -> ChunkCacheSession:
        transformer = self.pipe.transformer
        manager = StateManager(_BranchState)
        HookRegistry.check_if_exists_or_initialize(transformer).register_hook(
            _RootHook(manager, self.policy, self._stats, self.pipe), ROOT_HOOK
        )
        blocks = list(transformer.blocks)
        for index, block in enumerate(blocks):
            hook = _BlockHook(manager, first=index == 0, last=index == len(blocks) - 1)
            HookRegistry.check_if_exists_or_initialize(block).register_hook(hook, BLOCK_HOOK)
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
        return self

    def __exit__(self, *exc: object) -> None:
        transformer = self.pipe.transformer
        registry = HookRegistry.check_if_exists_or_initialize(transformer)
        registry.remove_hook(ROOT_HOOK, recurse=False)
        for block in transformer.blocks:
            HookRegistry.check_if_exists_or_initialize(block).remove_hook(BLOCK_HOOK, recurse=False)
        registry.invalidate_child_registries_cache()

    def stats(self) -> dict[str, Any]:
        """Counts so far: chunk-steps computed and reused, calls (skipped entirely), token fraction run."""
        return self._stats.as_dict()


def apply_chunk_cache(
    pipe: Any, threshold: float, warmup: int = 5, coefficients: Sequence[float] | None = None
) -> ChunkCacheSession:
    """A session that, entered, makes ``pipe``'s SkyReels-V2 transformer reuse chunks (``threshold`` 0: off).

    ``warmup``: changing calls per chunk always computed first; ``coefficients``: optional polynomial
    (highest power first) rescaling the relative L1 distance, e.g. a card's ``flowcache_coefficients``.
    """
    if threshold < 0 or warmup < 0:
        raise ValueError(f"chunk cache needs threshold >= 0 and warmup >= 0, got {threshold}, {warmup}")
    return ChunkCacheSession(pipe, threshold, warmup, coefficients)
