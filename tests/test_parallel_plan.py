"""The --parallel flag, the validated split degrees, and the task-or-split planner."""

from __future__ import annotations

import pytest
import torch

from core.parallel.config import ParallelConfig, parse_parallel_flag
from core.parallel.devices import cuda_visible_devices
from core.parallel.geometry import ModelGeometry, geometry_for, token_count
from core.parallel.planner import plan_parallel
from core.parallel.rank_options import merge_cache_stats, split_speed_config
from core.speed import SpeedConfig
from core.tasks import parse_request
from core.validation import ConfigError
from weights.registry import get_card

WAN_480P = {"model": "wan2.1-t2v-1.3b", "prompt": "a cat", "frames": 81, "width": 832, "height": 480}


def test_parse_parallel_flag() -> None:
    assert parse_parallel_flag("cfg, CP") == ("cfg", "cp")
    assert parse_parallel_flag("cfg,cfg") == ("cfg",)
    assert parse_parallel_flag("") == parse_parallel_flag(None) == ()
    with pytest.raises(ConfigError, match="parallel mode"):
        parse_parallel_flag("cfg,tensor")
    with pytest.raises(ConfigError, match="one of"):
        parse_parallel_flag("ulysses,ring")


def test_config_from_modes() -> None:
    assert ParallelConfig.from_modes(4, ("cfg", "cp"), heads=12) == ParallelConfig(4, cfg=2, ulysses=2)
    assert ParallelConfig.from_modes(6, ("cfg", "cp"), heads=12) == ParallelConfig(6, cfg=2, ulysses=3)
    assert ParallelConfig.from_modes(10, ("cfg", "cp"), heads=12) == ParallelConfig(10, cfg=2, ring=5)
    assert ParallelConfig.from_modes(2, ("cfg", "cp"), heads=12) == ParallelConfig(2, cfg=2)
    assert ParallelConfig.from_modes(2, ("ring",)) == ParallelConfig(2, ring=2)
    assert ParallelConfig.from_modes(1, ("cfg", "cp")) == ParallelConfig(1)
    assert ParallelConfig(8, cfg=2, ulysses=4).describe() == "8 ranks (cfg 2 x ulysses 4)"
    with pytest.raises(ConfigError, match="idle"):
        ParallelConfig.from_modes(4, ("cfg",))
    with pytest.raises(ConfigError, match="even"):
        ParallelConfig.from_modes(3, ("cfg", "cp"))
    with pytest.raises(ConfigError, match="does not make"):
        ParallelConfig(4, cfg=2, ulysses=3)
    with pytest.raises(ConfigError, match="either"):
        ParallelConfig(4, ulysses=2, ring=2)


def test_token_count_follows_latent_frames_and_patches() -> None:
    request = parse_request(WAN_480P)
    assert token_count(request, geometry_for(request.card)) == 21 * 30 * 52
    ti2v = parse_request({**WAN_480P, "model": "wan2.2-ti2v-5b", "width": 1280, "height": 704})
    assert geometry_for(ti2v.card) == ModelGeometry(heads=24, pixels_per_token=32, frames_per_latent=4)
    assert token_count(ti2v, geometry_for(ti2v.card)) == 21 * 22 * 40


def test_geometry_comes_from_the_card_and_a_card_without_arch_facts_says_so() -> None:
    assert geometry_for(get_card("wan2.1-t2v-14b")).heads == 40
    with pytest.raises(ConfigError, match="no arch facts"):
        geometry_for(get_card("realesrgan-x4plus"))


def test_many_jobs_run_one_per_gpu() -> None:
    plan = plan_parallel(5, 4, parse_request(WAN_480P))
    assert (plan.mode, plan.world_size, plan.config) == ("task", 1, None)
    assert "one job per GPU" in plan.reason
    assert plan_parallel(1, 1, parse_request(WAN_480P)).mode == "task"


def test_one_big_job_splits_over_the_idle_gpus() -> None:
    request = parse_request(WAN_480P)
    plan = plan_parallel(1, 4, request)
    assert (plan.mode, plan.world_size, plan.config) == ("split", 4, ParallelConfig(4, cfg=2, ulysses=2))
    assert plan.modes == ("cfg", "ulysses")
    assert plan_parallel(1, 8, request).config == ParallelConfig(8, cfg=2, ulysses=4)
    no_cfg = plan_parallel(1, 2, parse_request({**WAN_480P, "guidance": 1.0}))
    assert no_cfg.config == ParallelConfig(2, ulysses=2)


def test_heads_that_do_not_divide_fall_back_to_ring_then_fewer_gpus() -> None:
    request = parse_request(WAN_480P)
    assert plan_parallel(1, 10, request).config == ParallelConfig(10, cfg=2, ring=5)
    assert plan_parallel(1, 7, request).config == ParallelConfig(7, ring=7)
    plan = plan_parallel(1, 7, parse_request({**WAN_480P, "frames": 17}))
    assert plan.config == ParallelConfig(6, cfg=2, ulysses=3)
    assert "12 attention heads do not divide over Ulysses degree 7" in plan.reason
    assert "7800 tokens (17 frames at 832x480) do not divide over 7" in plan.reason


def test_small_or_indivisible_jobs_stay_on_one_gpu() -> None:
    tiny = parse_request(
        {"model": "tiny-wan", "prompt": "a cat", "frames": 1, "width": 48, "height": 48, "guidance": 1.0}
    )
    assert "too small" in plan_parallel(1, 2, tiny).reason
    plan = plan_parallel(1, 2, tiny, min_tokens=0)
    assert plan.mode == "task" and "9 tokens" in plan.reason and "do not divide over 2" in plan.reason
    assert plan_parallel(1, 2, tiny, geometry=ModelGeometry(2, 8, 4), min_tokens=0).mode == "split"


def test_child_gpu_pinning_follows_the_parents_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_visible_devices([1, 3]) == "1,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert cuda_visible_devices([1]) == "3"
    assert cuda_visible_devices([0, 1]) == "2,3"


def test_the_allowed_modes_choice_cache_and_memory_level_shape_the_plan() -> None:
    request = parse_request(WAN_480P)
    assert plan_parallel(1, 4, request, modes=("cfg",)).config == ParallelConfig(2, cfg=2)
    assert plan_parallel(1, 4, request, modes=("ring",)).config == ParallelConfig(4, ring=4)
    assert plan_parallel(5, 4, request, choice="split").mode == "split"
    one = plan_parallel(1, 4, request, choice="one")
    assert (one.mode, one.reason, one.describe()) == (
        "task",
        "one GPU asked for",
        "one GPU: one GPU asked for",
    )
    cached = parse_request({**WAN_480P, "cache": {"method": "teacache", "preset": "fast"}})
    plan = plan_parallel(1, 4, cached)
    assert plan.config == ParallelConfig(2, cfg=2)
    assert "teacache step cache does not combine with context parallel" in plan.reason
    offload = plan_parallel(1, 4, request, memory_level=4)
    assert offload.config == ParallelConfig(2, cfg=2) and "memory level 4 (DiT offload)" in offload.reason
    no_cfg = parse_request(
        {**WAN_480P, "guidance": 1.0, "cache": {"method": "first_block", "threshold": 0.1}}
    )
    refused = plan_parallel(1, 2, no_cfg, choice="split")
    assert refused.mode == "task" and refused.reason.startswith("no split fits")
    assert (
        plan_parallel(1, 4, request).describe().startswith("split over 4 ranks (cfg 2 x ulysses 2): one job")
    )


def test_split_ranks_change_only_what_context_parallel_cannot_run() -> None:
    cpu = torch.device("cpu")
    fa4 = SpeedConfig(attention="flash4")
    assert split_speed_config(fa4, ParallelConfig(2, cfg=2), cpu) == (fa4, None)
    changed, note = split_speed_config(fa4, ParallelConfig(2, ulysses=2), cpu)
    assert changed.attention == "sdpa" and "flash4 attention cannot run context parallel" in note
    assert split_speed_config(SpeedConfig(), ParallelConfig(2, ring=2), cpu) == (SpeedConfig(), None)


def test_cache_stats_of_the_ranks_merge_per_branch() -> None:
    def stats(branch: str, computed: int, reused: int, saved: float) -> dict:
        counts = {"steps_computed": computed, "steps_reused": reused}
        return {
            "method": "teacache",
            "threshold": 0.2,
            "estimated_seconds_saved": saved,
            "branches": {f"transformer/{branch}": counts},
        }

    merged = merge_cache_stats(
        [stats("cond", 6, 4, 1.5), stats("uncond", 6, 4, 2.0), stats("cond", 6, 4, 1.0)]
    )
    assert merged["steps_computed"] == 12 and merged["steps_reused"] == 8 and merged["reuse_fraction"] == 0.4
    assert merged["estimated_seconds_saved"] == 2.0 and list(merged["branches"]) == [
        "transformer/cond",
        "transformer/uncond",
    ]
