"""The request's speed options and step cache on split ranks: what changes there, and the merged stats.

- Speed: every option runs as on one GPU, except the attention backend under context parallel: it must be
  one diffusers can shard (FlashAttention-4 cannot), and ring attention needs the log-sum-exp (cuDNN on GPUs).
  Another backend is then used and the record's attention ``reason`` says so.
- Step cache: with CFG parallel each rank runs only its branch, and the caches keep one state per branch
  anyway, so every rank reuses exactly the steps one GPU would. No collective depends on the decision (the
  CFG hook swaps outputs outside the cache). Context parallel refuses caches (``geometry.split_problems``).
- Stats: each rank counts only its own branch; :func:`merge_cache_stats` joins them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from core.parallel.config import ParallelConfig
from core.speed import SpeedConfig
from core.speed.attention import BACKENDS, pick_attention_backend


def context_parallel_capable(name: str) -> bool:
    """Whether diffusers can run our attention backend ``name`` under context parallel."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    return _AttentionBackendRegistry._is_context_parallel_available(AttentionBackendName(BACKENDS[name]))


def split_speed_config(
    speed: SpeedConfig, config: ParallelConfig, device: torch.device
) -> tuple[SpeedConfig, str | None]:
    """``speed`` as a rank of ``config`` runs it, and a note when the attention backend had to change."""
    if config.context == 1:
        return speed, None
    fallback = "cudnn" if device.type == "cuda" else "sdpa"
    if config.ring > 1 and device.type == "cuda":
        if speed.attention == "cudnn":
            return speed, None
        return replace(speed, attention="cudnn"), "ring attention needs cuDNN's log-sum-exp"
    asked = pick_attention_backend(device).name if speed.attention == "auto" else speed.attention
    if context_parallel_capable(asked):
        return speed, None
    note = f"{asked} attention cannot run context parallel; {BACKENDS[fallback]} used"
    return replace(speed, attention=fallback), note


def merge_cache_stats(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """One cache record from every rank's ``CacheSession.stats()``.

    Branch counts are taken once per branch (ranks that share a branch, e.g. context-parallel peers, count
    the same steps); the totals are summed over branches; the time saved is the largest any rank saved,
    since the ranks run at the same time.
    """
    first = per_rank[0]
    branches: dict[str, dict[str, int]] = {}
    for stats in per_rank:
        for name, counts in stats.get("branches", {}).items():
            seen = branches.get(name)
            if seen is None or counts["steps_computed"] + counts["steps_reused"] > sum(seen.values()):
                branches[name] = dict(counts)
    computed = sum(b["steps_computed"] for b in branches.values())
    reused = sum(b["steps_reused"] for b in branches.values())
    total = computed + reused
    return {
        "method": first.get("method"),
        "threshold": first.get("threshold"),
        "steps_computed": computed,
        "steps_reused": reused,
        "reuse_fraction": reused / total if total else 0.0,
        "estimated_seconds_saved": max(s.get("estimated_seconds_saved", 0.0) for s in per_rank),
        "branches": dict(sorted(branches.items())),
    }
