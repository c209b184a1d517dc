"""Keys and values of finished (clean) chunks that later chunks attend to.

MAGI-1 forwards every chunk once more at ``clean_t`` right after it leaves the denoising window (and every
prefix-video chunk once before generation); the keys / values that pass produces, per layer, are kept here
and read by every later forward whose KV range reaches back to that chunk. Chunks that no later chunk can
reach any more (older than ``keep_chunks`` behind the newest) are dropped.

A :class:`KVPolicy` may shrink what is kept: after each chunk is appended, ``compress(cache, layer)`` is
called once per layer and may replace any chunk's entry with fewer tokens (:meth:`ChunkKVCache.replace`).
Attention handles entries of any length. The default :class:`KeepAll` keeps every token. A policy that
scores tokens by the attention recent queries pay them sets ``query_tokens`` > 0: the DiT then hands the
cache, per layer, that many rotated queries of the newest chunk that attends earlier chunks, in every call
that stores a finished chunk (:meth:`ChunkKVCache.recent_queries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

KV = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class KVPolicy(Protocol):
    """Decides what of the cached keys / values to keep (optional attribute ``query_tokens: int``)."""

    def compress(self, cache: ChunkKVCache, layer: int) -> None:
        """Called after a chunk was appended, once per layer; may :meth:`ChunkKVCache.replace` entries."""


class KeepAll:
    """Keeps every token of every reachable chunk."""

    def compress(self, cache: ChunkKVCache, layer: int) -> None:
        return None


class ChunkKVCache:
    """Per layer, per chunk ``(key, value)`` of shape ``[batch, kv_heads, tokens, head_dim]``."""

    def __init__(self, num_layers: int, *, keep_chunks: int | None = None, policy: KVPolicy | None = None):
        self.num_layers = num_layers
        self.keep_chunks = keep_chunks
        self.policy: KVPolicy = policy or KeepAll()
        self._layers: list[dict[int, KV]] = [{} for _ in range(num_layers)]
        self._queries: dict[int, torch.Tensor] = {}
        self.peak_tokens = 0

    @property
    def query_tokens(self) -> int:
        """How many recent queries per layer the policy asks to see (0: none)."""
        return int(getattr(self.policy, "query_tokens", 0))

    def observe_queries(self, layer: int, queries: torch.Tensor) -> None:
        """Keep ``[batch, heads, tokens, head_dim]`` queries of the latest storing call for ``layer``."""
        self._queries[layer] = queries

    def recent_queries(self, layer: int) -> torch.Tensor | None:
        return self._queries.get(layer)

    @property
    def chunks(self) -> list[int]:
        """Chunk indices held, oldest first."""
        return sorted(self._layers[0]) if self._layers else []

    def append(self, chunk: int, layers: Sequence[KV]) -> None:
        """Store the keys / values of finished ``chunk`` for every layer, then compress and evict."""
        if len(layers) != self.num_layers:
            raise ValueError(f"expected keys/values for {self.num_layers} layers, got {len(layers)}")
        for layer, (key, value) in enumerate(layers):
            self._layers[layer][chunk] = (key, value)
        for layer in range(self.num_layers):
            self.policy.compress(self, layer)
        if self.keep_chunks is not None:
            for old in self.chunks[: max(0, len(self.chunks) - self.keep_chunks)]:
                for entries in self._layers:
                    entries.pop(old, None)
        self.peak_tokens = max(self.peak_tokens, self.tokens_held())

    def entry(self, layer: int, chunk: int) -> KV:
        return self._layers[layer][chunk]

    def replace(self, layer: int, chunk: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Swap one entry (a compressed version); key and value must keep batch, heads and head_dim."""
        old_key, _ = self._layers[layer][chunk]
        if (
            key.shape[:2] != old_key.shape[:2]
            or key.shape[-1] != old_key.shape[-1]
            or key.shape != value.shape
        ):
            raise ValueError(
                "a replaced KV entry must keep [batch, kv_heads, *, head_dim] and match its value"
            )
        self._layers[layer][chunk] = (key, value)

    def gather(
        self, layer: int, chunks: Sequence[int]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[int]]:
        """Keys and values of ``chunks`` concatenated along tokens, plus each chunk's token count."""
        entries = [self._layers[layer][chunk] for chunk in chunks]
        if not entries:
            return None, None, []
        lengths = [key.shape[2] for key, _ in entries]
        keys = torch.cat([key for key, _ in entries], dim=2)
        values = torch.cat([value for _, value in entries], dim=2)
        return keys, values, lengths

    def tokens_held(self) -> int:
        """Tokens held summed over chunks, for one layer (the largest)."""
        return max((sum(k.shape[2] for k, _ in entries.values()) for entries in self._layers), default=0)

    def bytes_held(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for entries in self._layers for k, _ in entries.values())

    def stats(self) -> dict[str, int]:
        return {
            "kv_chunks": len(self.chunks),
            "kv_tokens": self.tokens_held(),
            "kv_peak_tokens": self.peak_tokens,
            "kv_bytes": self.bytes_held(),
        }
