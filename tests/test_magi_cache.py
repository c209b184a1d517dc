"""MAGI-1 FlowCache: chunk-wise reuse hooks, KV-cache compression to a budget, and the app's factory."""

from __future__ import annotations

import pytest
import torch

from core.magi.caching import build_magi_cache, magi_cache_stats
from core.magi.flowcache import FlowCache, FlowCacheConfig
from core.magi.generate import generate
from core.magi.hooks import MagiStepHooks
from core.magi.kv_cache import ChunkKVCache, KVPolicy
from core.magi.kv_compress import ImportanceRedundancyKV, KVCompressConfig
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_magi"]


class TokenCounter:
    """Counts the tokens the first DiT layer processes (the computed chunk-steps' work)."""

    def __init__(self, dit):
        self.tokens = 0
        self.handle = dit.videodit_blocks.layers[0].register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.tokens += args[0].shape[1]

    def close(self) -> int:
        self.handle.remove()
        return self.tokens


def _run(dit, vae, caption, *, hooks=None, policy=None, chunks=3, size=32, steps=8, window=4, stats=None):
    return generate(
        dit,
        vae,
        *caption,
        num_chunks=chunks,
        height=size,
        width=size,
        steps=steps,
        guidance=1.0,
        seed=0,
        window_size=window,
        step_hooks=hooks,
        kv_policy=policy,
        stats=stats,
    )


def test_threshold_zero_is_exactly_no_cache(distill_dit, vae, caption):
    reference = _run(distill_dit, vae, caption)
    hooks = FlowCache(FlowCacheConfig(threshold=0.0, warmup=0))
    assert torch.equal(_run(distill_dit, vae, caption, hooks=hooks), reference)
    stats = hooks.stats()
    assert stats["chunk_steps_reused"] == 0 and stats["chunk_steps_computed"] == 3 * 8


def test_positive_threshold_computes_fewer_chunk_steps_and_stays_close(distill_dit, vae, caption):
    counter = TokenCounter(distill_dit)
    reference = _run(distill_dit, vae, caption)
    full_tokens = counter.tokens
    hooks = FlowCache(FlowCacheConfig(threshold=0.3, warmup=2))
    cached = _run(distill_dit, vae, caption, hooks=hooks)
    cached_tokens = counter.close() - full_tokens
    stats = hooks.stats()
    assert stats["chunk_steps_reused"] > 0
    assert stats["chunk_steps_computed"] + stats["chunk_steps_reused"] == 3 * 8
    assert cached_tokens < full_tokens
    other_seed = generate(
        distill_dit, vae, *caption, num_chunks=3, height=32, width=32, steps=8, guidance=1.0, seed=1
    )
    error = (cached - reference).abs().mean()
    assert 0 < error < 0.5 * (other_seed - reference).abs().mean()


def test_state_does_not_leak_between_runs(distill_dit, vae, caption):
    hooks = FlowCache(FlowCacheConfig(threshold=0.3, warmup=2))
    first = _run(distill_dit, vae, caption, hooks=hooks)
    first_stats = hooks.stats()
    second = _run(distill_dit, vae, caption, hooks=hooks)
    assert torch.equal(first, second) and hooks.stats() == first_stats
    fresh = FlowCache(FlowCacheConfig(threshold=0.3, warmup=2))
    assert torch.equal(_run(distill_dit, vae, caption, hooks=fresh), first)


def test_guidance_branches_keep_their_own_chunk_state(base_dit, vae, caption):
    hooks = FlowCache(FlowCacheConfig(threshold=0.3, warmup=2))
    video = generate(
        base_dit,
        vae,
        *caption,
        num_chunks=2,
        height=32,
        width=32,
        steps=8,
        guidance=7.5,
        seed=0,
        step_hooks=hooks,
    )
    assert video.shape == (48, 32, 32, 3) and bool(torch.isfinite(video).all())
    assert {"null", "cond"} <= set(hooks._branches)
    assert hooks.stats()["chunk_steps_reused"] > 0


@pytest.mark.parametrize(("granularity", "budget"), [("token", 10), ("frame", 14), ("chunk", 30)])
def test_compression_keeps_the_kv_cache_within_budget_on_a_long_run(
    distill_dit, vae, caption, granularity, budget
):
    # 32x32: 4 tokens per latent frame, 24 per chunk; uncompressed the cache holds 4 chunks (96 tokens)
    policy = ImportanceRedundancyKV(KVCompressConfig(budget=budget, granularity=granularity))
    stats: dict = {}
    video = _run(distill_dit, vae, caption, policy=policy, chunks=9, steps=4, window=1, stats=stats)
    assert stats["kv_peak_tokens"] <= budget
    record = policy.stats()
    assert record["kv_peak_tokens_kept"] <= budget and record["kv_tokens_dropped"] > 0
    unit = {"token": 1, "frame": 4, "chunk": 24}[granularity]
    assert record["kv_tokens_kept"] == budget // unit * unit
    assert record["kv_bytes_bound"] == budget * 2 * 16 * 2 * 4 * distill_dit.config.num_layers
    assert video.shape[0] == 9 * 24 and bool(torch.isfinite(video).all())


def test_budget_above_the_cache_changes_nothing(distill_dit, vae, caption):
    plain: dict = {}
    reference = _run(distill_dit, vae, caption, chunks=6, window=1, steps=4, stats=plain)
    assert plain["kv_peak_tokens"] == 4 * 24
    policy = ImportanceRedundancyKV(KVCompressConfig(budget=96))
    assert torch.equal(_run(distill_dit, vae, caption, policy=policy, chunks=6, window=1, steps=4), reference)
    assert policy.stats()["kv_tokens_dropped"] == 0 and policy.stats()["kv_compressions"] == 0


def test_the_dit_hands_the_policy_the_newest_chunks_rotated_queries(distill_dit, vae, caption, monkeypatch):
    import core.magi.layers as layers

    seen_queries, checked = [], []
    original = layers.block_attention

    def recording(query, *args):
        seen_queries.append(query)
        return original(query, *args)

    class Recorder:
        query_tokens = 64

        def compress(self, cache, layer):
            # window 1: the storing call is [clean chunk, next chunk]; the next chunk (24 tokens) attends
            expected = seen_queries[-distill_dit.config.num_layers + layer][:, :, 24:48]
            checked.append(torch.equal(cache.recent_queries(layer), expected))

    monkeypatch.setattr(layers, "block_attention", recording)
    _run(distill_dit, vae, caption, policy=Recorder(), chunks=3, steps=4, window=1)
    assert checked == [True] * 2 * distill_dit.config.num_layers


def test_compression_keeps_attended_tokens_and_the_newest_chunk():
    generator = torch.Generator().manual_seed(0)
    cache = ChunkKVCache(
        1, policy=ImportanceRedundancyKV(KVCompressConfig(8, "token", redundancy_weight=0.0, pool=1))
    )
    old = torch.randn(1, 2, 12, 16, generator=generator)
    queries = old[:, :, [3, 7]].repeat_interleave(2, dim=1) * 20  # 4 query heads, 2 kv heads
    cache.observe_queries(0, queries)
    cache.append(0, [(old, old.clone())])
    newest = torch.randn(1, 2, 6, 16, generator=generator)
    cache.append(1, [(newest, newest.clone())])
    key, _ = cache.entry(0, 0)
    assert key.shape == (1, 2, 2, 16)
    assert torch.equal(key, old[:, :, [3, 7]])
    assert torch.equal(cache.entry(0, 1)[0], newest)


def test_factory_builds_hooks_and_policy_and_reports():
    assert build_magi_cache(None) == (None, None)
    assert build_magi_cache("off") == (None, None) and build_magi_cache({}) == (None, None)
    assert build_magi_cache({"preset": "off"}) == (None, None)
    hooks, policy = build_magi_cache({"preset": "fast"}, kv_budget=1000, granularity="token")
    assert isinstance(hooks, FlowCache) and hooks.config == FlowCacheConfig(threshold=0.01, warmup=5)
    assert isinstance(policy, ImportanceRedundancyKV) and policy.config.granularity == "token"
    assert isinstance(hooks, MagiStepHooks) and isinstance(policy, KVPolicy)
    hooks, policy = build_magi_cache({"method": "flowcache", "threshold": 0.2, "warmup": 1})
    assert hooks.config.threshold == 0.2 and hooks.config.warmup == 1 and policy is None
    assert build_magi_cache("faster")[0].config == FlowCacheConfig(threshold=0.05, warmup=3)
    record = magi_cache_stats(*build_magi_cache("fast", kv_budget=64))
    assert record["chunk_steps_reused"] == 0 and record["kv_budget_tokens"] == 64
    assert magi_cache_stats(None, None) == {}


@pytest.mark.parametrize(
    ("cache", "kwargs", "message"),
    [
        ({"method": "teacache"}, {}, "cache method"),
        ({"threshold": -1}, {}, "threshold"),
        ({"warmup": "x"}, {}, "warmup"),
        ({"speed": 1}, {}, "unknown field"),
        ({"preset": "turbo"}, {}, "preset"),
        (5, {}, "mapping"),
        (None, {"kv_budget": -1}, "kv_budget"),
        (None, {"kv_budget": 10, "granularity": "pixel"}, "granularity"),
    ],
)
def test_bad_configs_raise_config_error(cache, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_magi_cache(cache, **kwargs)
