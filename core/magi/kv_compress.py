"""FlowCache KV-cache compression for MAGI-1: a fixed token budget for the finished chunks' keys / values.

After each finished chunk enters :class:`~core.magi.kv_cache.ChunkKVCache`, every layer's entries of the
chunks that stay reachable are cut to ``budget`` tokens in all. Each token gets a joint score (FlowCache's
importance-redundancy criterion, after R-KV):

* importance: the softmax attention mass that a sample of the newest queries (rotated, of the newest chunk
  that attends earlier chunks, handed over by the DiT) puts on it, max-pooled over neighbouring tokens
  and scaled to 1 at each head's most attended token;
* redundancy: its mean cosine similarity to the other cached keys of its head.

``score = importance - redundancy_weight * redundancy``; scores are averaged over units of one token, one
latent frame or one whole chunk (``granularity``) and the best units are kept. How many units each chunk
keeps is decided on the head-averaged score, with the newest chunk first (it is never cut unless the
budget is smaller than it); which units, per batch row and key head. Keys carry their rotary positions, so
a kept subset attends exactly like the same tokens did before. Memory stays bounded by the budget however
long the video gets. The published weighting (``mix_lambda`` 0.07 on raw attention mass) is replaced by the
normalised importance above, since raw mass over tens of thousands of video tokens is tiny.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.magi.kv_cache import KV, ChunkKVCache
from core.validation import as_choice, as_float, as_int

GRANULARITIES = ("token", "frame", "chunk")
NEWEST_BONUS = 1e4
STAT_KEYS = (
    "kv_tokens_kept",
    "kv_tokens_dropped",
    "kv_peak_tokens_kept",
    "kv_compressions",
    "kv_bytes_bound",
)


@dataclass(frozen=True)
class KVCompressConfig:
    """``budget``: cached tokens per layer over all finished chunks; ``chunk_frames``: latent frames per
    chunk (to find frame units)."""

    budget: int
    granularity: str = "frame"
    redundancy_weight: float = 0.5
    query_tokens: int = 64
    pool: int = 7
    chunk_frames: int = 6

    def __post_init__(self) -> None:
        as_int("kv budget (tokens)", self.budget, low=1)
        as_choice("kv granularity", self.granularity, GRANULARITIES)
        as_float("kv redundancy weight", self.redundancy_weight, low=0.0, high=100.0)
        as_int("kv query tokens", self.query_tokens, low=0, high=65536)
        as_int("kv pool", self.pool, low=1, high=63)
        as_int("kv chunk frames", self.chunk_frames, low=1)


class ImportanceRedundancyKV:
    """:class:`~core.magi.kv_cache.KVPolicy` keeping at most ``budget`` tokens per layer."""

    def __init__(self, config: KVCompressConfig) -> None:
        self.config = config
        self.query_tokens = config.query_tokens
        self._cache: weakref.ref | None = None
        self._stats: dict[str, int] = {}

    def compress(self, cache: ChunkKVCache, layer: int) -> None:
        self._follow(cache)
        chunks = cache.chunks
        if cache.keep_chunks is not None:
            chunks = chunks[-cache.keep_chunks :]
        entries = [cache.entry(layer, chunk) for chunk in chunks]
        lengths = [key.shape[2] for key, _ in entries]
        if layer == 0:
            self._note_bound(entries[-1])
        if sum(lengths) > self.config.budget:
            kept = self._select(entries, lengths, cache.recent_queries(layer))
            for chunk, (key, value), index in zip(chunks, entries, kept, strict=True):
                if index is not None:
                    cache.replace(layer, chunk, _take(key, index), _take(value, index))
            if layer == 0:
                after = sum(cache.entry(layer, chunk)[0].shape[2] for chunk in chunks)
                self._stats["kv_tokens_dropped"] += sum(lengths) - after
                self._stats["kv_compressions"] += 1
        if layer == 0:
            held = sum(cache.entry(layer, chunk)[0].shape[2] for chunk in chunks)
            self._stats["kv_tokens_kept"] = held
            self._stats["kv_peak_tokens_kept"] = max(self._stats["kv_peak_tokens_kept"], held)

    def _follow(self, cache: ChunkKVCache) -> None:
        """Start fresh counts when a new generation (a new cache) begins."""
        if self._cache is None or self._cache() is not cache:
            self._cache = weakref.ref(cache)
            self._layers = cache.num_layers
            self._stats = dict.fromkeys(STAT_KEYS, 0)

    def _note_bound(self, newest: KV) -> None:
        key = newest[0]
        per_token = key.shape[0] * key.shape[1] * key.shape[3] * key.element_size() * 2
        self._stats["kv_bytes_bound"] = self.config.budget * per_token * self._layers

    def _unit(self, newest_length: int) -> int:
        if self.config.granularity == "chunk":
            return newest_length
        if self.config.granularity == "frame" and newest_length % self.config.chunk_frames == 0:
            return newest_length // self.config.chunk_frames
        return 1

    def _select(
        self, entries: Sequence[KV], lengths: list[int], queries: torch.Tensor | None
    ) -> list[torch.Tensor | None]:
        """Per chunk, the token indices ``[B, heads, kept]`` to keep (None: keep the entry as it is)."""
        unit = self._unit(lengths[-1])
        if any(length % unit for length in lengths):
            unit = 1
        keys = torch.cat([key for key, _ in entries], dim=2).float()
        score = _importance(queries, keys, self.config.pool)
        score = score - self.config.redundancy_weight * _redundancy(keys)
        unit_scores = [part.unflatten(-1, (-1, unit)).mean(-1) for part in score.split(lengths, dim=-1)]
        ranking = [part.mean(dim=(0, 1)) for part in unit_scores]
        ranking[-1] = ranking[-1] + NEWEST_BONUS
        owner = torch.cat([torch.full((len(r),), i, device=keys.device) for i, r in enumerate(ranking)])
        best = torch.cat(ranking).topk(min(self.config.budget // unit, len(owner))).indices
        counts = torch.bincount(owner[best], minlength=len(entries)).tolist()
        kept: list[torch.Tensor | None] = []
        for part, count, length in zip(unit_scores, counts, lengths, strict=True):
            if count * unit == length:
                kept.append(None)
                continue
            units = part.topk(count, dim=-1).indices.sort(dim=-1).values
            offsets = torch.arange(unit, device=units.device)
            kept.append((units[..., None] * unit + offsets).flatten(-2))
        return kept

    def stats(self) -> dict[str, int | str]:
        """Tokens per layer kept now / dropped so far / at most, compressions, and the memory bound."""
        return {
            "kv_budget_tokens": self.config.budget,
            "kv_granularity": self.config.granularity,
            **self._stats,
        }


def _importance(queries: torch.Tensor | None, keys: torch.Tensor, pool: int) -> torch.Tensor:
    """``[B, kv_heads, tokens]`` attention mass of ``queries [B, heads, n, hd]`` on ``keys`` (max 1)."""
    batch, groups, tokens, head_dim = keys.shape
    if queries is None:
        return keys.new_zeros(batch, groups, tokens)
    per_group = queries.float().to(keys.device).unflatten(1, (groups, -1)).flatten(2, 3)
    mass = torch.stack(
        [
            torch.softmax(per_group[:, g] @ keys[:, g].transpose(-1, -2) * head_dim**-0.5, dim=-1).mean(-2)
            for g in range(groups)
        ],
        dim=1,
    )
    mass = F.max_pool1d(mass.flatten(0, 1)[:, None], pool, stride=1, padding=pool // 2)[:, 0]
    mass = mass[:, :tokens].unflatten(0, (batch, groups))
    return mass / mass.amax(dim=-1, keepdim=True).clamp_min(1e-12)


def _redundancy(keys: torch.Tensor) -> torch.Tensor:
    """``[B, kv_heads, tokens]`` mean cosine similarity of each key to the other keys of its head."""
    unit = F.normalize(keys, dim=-1)
    others = unit.sum(dim=2, keepdim=True) - unit
    return (unit * others).sum(-1) / max(1, keys.shape[2] - 1)


def _take(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor [B, heads, tokens, hd]`` at ``index [B, heads, kept]`` along tokens."""
    return tensor.gather(2, index[..., None].expand(-1, -1, -1, tensor.shape[-1]))
