"""What a split needs to know about a model: attention heads and how many tokens a request makes.

Both come from the model card's ``arch`` facts (``weights.card_facts.Architecture``)."""

from __future__ import annotations

from dataclasses import dataclass

from core.memory.levels import GROUP_OFFLOAD, LEVELS
from core.parallel.config import ParallelConfig
from core.tasks.t2v import T2VRequest
from weights.registry import ModelCard


@dataclass(frozen=True)
class ModelGeometry:
    """Attention ``heads``; pixels per token side (VAE stride x patch); video frames per latent frame."""

    heads: int
    pixels_per_token: int
    frames_per_latent: int


def geometry_for(card: ModelCard) -> ModelGeometry:
    """The split geometry from the card's arch facts (a clear error when the card has none)."""
    arch = card.architecture()
    return ModelGeometry(arch.heads, arch.pixels_per_token, arch.frames_per_latent)


def token_count(request: T2VRequest, geometry: ModelGeometry) -> int:
    """Sequence length of one transformer call: latent frames x (h / p) x (w / p)."""
    latent_frames = (request.frames - 1) // geometry.frames_per_latent + 1
    side = geometry.pixels_per_token
    return latent_frames * (request.height // side) * (request.width // side)


def split_problems(
    request: T2VRequest, config: ParallelConfig, geometry: ModelGeometry, memory_level: int = 0
) -> list[str]:
    """Why ``request`` cannot run split as ``config`` at ``memory_level`` (empty when it can).

    Context parallel splits the tokens at the first block, where the step caches also hook in (they would
    see whole sequences on one side of the split and slices on the other), and its collectives run inside
    the blocks that DiT offload streams in: neither is combined with it. CFG parallel takes both.
    """
    problems = []
    if config.cfg == 2 and request.guidance <= 1.0:
        problems.append(
            f"CFG parallel needs guidance above 1 (got {request.guidance}): there is no uncond pass"
        )
    if config.context > 1:
        tokens = token_count(request, geometry)
        if tokens % config.context:
            problems.append(
                f"{tokens} tokens ({request.frames} frames at {request.width}x{request.height}) "
                f"do not divide over {config.context} context-parallel ranks"
            )
        if config.ulysses > 1 and geometry.heads % config.ulysses:
            problems.append(
                f"{geometry.heads} attention heads do not divide over Ulysses degree {config.ulysses}"
            )
        cache = request.cache_config
        if cache.enabled:
            problems.append(f"the {cache.method} step cache does not combine with context parallel")
        if memory_level >= GROUP_OFFLOAD:
            problems.append(
                f"memory level {memory_level} ({LEVELS[memory_level].label}) does not combine with "
                "context parallel"
            )
    return problems
