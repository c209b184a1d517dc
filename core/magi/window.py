"""Turn the chunks of one window step into a DiT call: caption rows and the block-causal plan."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.magi.attention import ChunkSlot, ForwardPlan
from core.magi.kv_cache import ChunkKVCache
from core.validation import ConfigError


@dataclass(frozen=True)
class CallSlot:
    """A chunk in a call: its time, caption row, whether it is being denoised, and how far back it sees."""

    chunk: int
    t: float
    caption: int
    denoising: bool
    reach: int


@dataclass
class Captions:
    """Caption rows of a generation: row 0 the negative / null caption, then the prompt (one or per chunk)."""

    NULL_ROW = 0

    rows: torch.Tensor
    mask: torch.Tensor
    per_chunk: bool
    first_chunk: int = 0

    def row(self, chunk: int) -> int:
        if not self.per_chunk:
            return 1
        return 1 + min(chunk - self.first_chunk, self.rows.shape[1] - 2)

    @classmethod
    def build(cls, caption, caption_mask, negative, negative_mask, *, num_chunks: int, device) -> Captions:
        if caption.dim() == 3:
            caption, caption_mask = caption[:, None], caption_mask[:, None]
        if caption.dim() != 4 or caption_mask.shape != caption.shape[:3]:
            raise ConfigError("caption must be [1, L, D] or [1, chunks, L, D] with a matching mask")
        if caption.shape[1] not in (1, num_chunks):
            raise ConfigError(
                f"per-chunk captions must number num_chunks ({num_chunks}), got {caption.shape[1]}"
            )
        if negative.dim() == 3:
            negative, negative_mask = negative[:, None], negative_mask[:, None]
        length = max(caption.shape[2], negative.shape[2])
        rows = torch.cat([_pad(negative.float(), length), _pad(caption.float(), length)], dim=1)
        masks = torch.cat([_pad(negative_mask.bool(), length), _pad(caption_mask.bool(), length)], dim=1)
        return cls(rows.to(device), masks.to(device), per_chunk=caption.shape[1] > 1)


def _pad(x: torch.Tensor, length: int) -> torch.Tensor:
    extra = length - x.shape[2]
    if extra == 0:
        return x
    pad = (0, 0, 0, extra) if x.dim() == 4 else (0, extra)
    return F.pad(x, pad)


def context_plan(
    slots: list[CallSlot],
    cache: ChunkKVCache,
    width: int,
    *,
    store_first: bool,
    alone: list[CallSlot] = (),
) -> ForwardPlan:
    """Consecutive chunks attending the cache and each other; ``alone`` slots follow, seeing only themselves.

    Each slot attends the chunks ``chunk - reach + 1 .. chunk``; the cached chunks that reach needs are
    placed first. ``store_first`` returns the first slot's keys / values (a clean chunk for the cache).
    """
    chunks = [s.chunk for s in slots]
    if chunks != list(range(chunks[0], chunks[0] + len(chunks))):
        raise ValueError(f"context slots must be consecutive chunks, got {chunks}")
    base = min(max(0, s.chunk - s.reach + 1) for s in slots)
    cached = tuple(range(base, chunks[0]))
    missing = sorted(set(cached) - set(cache.chunks))
    if missing:
        raise RuntimeError(f"KV cache lacks chunks {missing} that chunks {chunks} attend")
    planned = [
        ChunkSlot(
            chunk=s.chunk,
            frame_start=s.chunk * width,
            keys=(max(base, s.chunk - s.reach + 1) - base, s.chunk - base + 1),
            caption=s.caption,
        )
        for s in slots
    ]
    blocks = len(cached) + len(planned)
    for offset, s in enumerate(alone):
        frame = (chunks[-1] + 1 + offset) * width
        planned.append(ChunkSlot(s.chunk, frame, (blocks + offset, blocks + offset + 1), s.caption))
    return ForwardPlan(slots=tuple(planned), cached=cached, store=(0,) if store_first else ())


def isolated_plan(slots: list[CallSlot]) -> ForwardPlan:
    """Every chunk alone at time position 0, no cache (the unconditional guidance branch)."""
    return ForwardPlan(slots=tuple(ChunkSlot(s.chunk, 0, (i, i + 1), s.caption) for i, s in enumerate(slots)))
