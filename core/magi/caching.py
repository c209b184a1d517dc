"""The one entry point the app uses for MAGI-1 speed / memory caches: request fields -> hooks and policy.

``cache`` (the request's cache field) picks FlowCache chunk reuse: ``None`` / ``"off"`` / ``{}`` for none,
``{"preset": "fast" | "faster"}`` (or the bare preset name), or ``{"method": "flowcache", "threshold": 0.01,
"warmup": 5}``; an explicit threshold wins over a preset. ``kv_budget`` > 0 turns on KV-cache compression
to that many tokens per layer for all finished chunks, at ``granularity`` token, frame or chunk.
"""

from __future__ import annotations

from typing import Any

from core.magi.flowcache import FlowCache, FlowCacheConfig
from core.magi.hooks import MagiStepHooks
from core.magi.kv_cache import KVPolicy
from core.magi.kv_compress import GRANULARITIES, ImportanceRedundancyKV, KVCompressConfig
from core.validation import ConfigError, as_choice, as_int

# "fast" is the published MAGI-1 FlowCache setting; "faster" is ours (more reuse, for few-step runs).
PRESETS: dict[str, FlowCacheConfig] = {
    "fast": FlowCacheConfig(threshold=0.01, warmup=5),
    "faster": FlowCacheConfig(threshold=0.05, warmup=3),
}
CACHE_FIELDS = ("method", "preset", "threshold", "warmup")
OFF = ("off", "none")


def build_magi_cache(
    cache: dict | str | None, kv_budget: int = 0, granularity: str = "frame"
) -> tuple[MagiStepHooks | None, KVPolicy | None]:
    """FlowCache hooks (or None) and a KV compression policy (or None) for one MAGI-1 generation."""
    budget = as_int("kv_budget", kv_budget, low=0)
    as_choice("kv granularity", granularity, GRANULARITIES)
    config = _flowcache_config(cache)
    hooks = FlowCache(config) if config is not None else None
    policy = ImportanceRedundancyKV(KVCompressConfig(budget, granularity)) if budget else None
    return hooks, policy


def _flowcache_config(cache: Any) -> FlowCacheConfig | None:
    if cache is None or (isinstance(cache, str) and cache.lower() in OFF):
        return None
    if isinstance(cache, str):
        cache = {"preset": cache}
    if not isinstance(cache, dict):
        raise ConfigError(f"cache must be a mapping like {{'preset': 'fast'}}, got {cache!r}")
    if not cache:
        return None
    unknown = sorted(set(cache) - set(CACHE_FIELDS))
    if unknown:
        raise ConfigError(f"cache: unknown field(s) {', '.join(unknown)}; known: {', '.join(CACHE_FIELDS)}")
    method = str(cache.get("method") or "flowcache").lower()
    if method in OFF:
        return None
    as_choice("cache method (MAGI-1)", method, ("flowcache", "auto"))
    preset = str(cache.get("preset") or "fast").lower()
    threshold, warmup = cache.get("threshold"), cache.get("warmup")
    if preset in OFF:
        if threshold is None:
            return None
        base = FlowCacheConfig()
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ConfigError(f"cache preset must be one of off, {', '.join(PRESETS)}; got {preset!r}")
    return FlowCacheConfig(
        threshold=base.threshold if threshold is None else threshold,
        warmup=base.warmup if warmup is None else warmup,
    )


def magi_cache_stats(hooks: MagiStepHooks | None, policy: KVPolicy | None) -> dict:
    """What the caches did in the last run, for the output record (empty when neither was on)."""
    record: dict = {}
    for part in (hooks, policy):
        stats = getattr(part, "stats", None)
        if callable(stats):
            record.update(stats())
    return record
