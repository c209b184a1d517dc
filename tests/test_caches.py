"""Step caches on the tiny Wan pipeline: equality at threshold 0, fewer block runs above it, per-branch
state, resets, stats, the diffusers methods through the same interface, and config errors."""

from __future__ import annotations

import pytest
import torch

pytest.register_assert_rewrite("tests.conftest_caches")

from core.caches import CacheConfig, ReuseDecision, apply_cache, parse_cache_config  # noqa: E402
from core.caches.criterion import relative_l1, rescale  # noqa: E402
from core.validation import ConfigError  # noqa: E402
from tests.conftest_caches import STEPS, FeedForwardCounter, run_latents  # noqa: E402
from weights.registry import get_card  # noqa: E402

pytest_plugins = ["tests.conftest_caches"]

TEACACHE_REUSING = 1.2  # the tiny model's random time embedder moves ~0.5-1 (relative L1) per step


@pytest.fixture(scope="module")
def baseline(tiny_wan_pipe):
    return run_latents(tiny_wan_pipe)


def cached_run(pipe, card, cache: dict | None):
    counter = FeedForwardCounter(pipe.transformer)
    try:
        with apply_cache(pipe, card, parse_cache_config(cache, card)) as session:
            latents = run_latents(pipe)
            return latents, session.stats(), counter.calls
    finally:
        counter.close()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_teacache_threshold_zero_is_identical_to_no_cache(tiny_wan_pipe, tiny_card, baseline):
    latents, stats, block_calls = cached_run(tiny_wan_pipe, tiny_card, {"method": "teacache", "threshold": 0})
    assert torch.equal(latents, baseline)
    assert stats["steps_computed"] == 2 * STEPS and stats["steps_reused"] == 0
    assert block_calls == 2 * STEPS * len(tiny_wan_pipe.transformer.blocks)


def test_teacache_positive_threshold_runs_fewer_blocks_and_stays_close(tiny_wan_pipe, tiny_card, baseline):
    cache = {"method": "teacache", "threshold": TEACACHE_REUSING}
    latents, stats, block_calls = cached_run(tiny_wan_pipe, tiny_card, cache)
    layers = len(tiny_wan_pipe.transformer.blocks)
    assert stats["steps_reused"] > 0
    assert block_calls == stats["steps_computed"] * layers < 2 * STEPS * layers
    assert stats["steps_computed"] + stats["steps_reused"] == 2 * STEPS
    assert relative_error(latents, baseline) < 0.05


def test_stats_per_branch_and_first_last_steps_always_computed(tiny_wan_pipe, tiny_card):
    _, stats, _ = cached_run(tiny_wan_pipe, tiny_card, {"method": "teacache", "threshold": 3.0})
    branches = stats["branches"]
    assert set(branches) == {"transformer/cond", "transformer/uncond"}
    for counts in branches.values():
        assert counts["steps_computed"] + counts["steps_reused"] == STEPS
        assert counts["steps_computed"] >= 2  # the first (warm-up) and the last step
    assert stats["method"] == "teacache" and stats["threshold"] == 3.0
    assert stats["steps_reused"] == sum(c["steps_reused"] for c in branches.values())
    assert 0 < stats["reuse_fraction"] < 1 and stats["estimated_seconds_saved"] >= 0


def test_state_is_reset_between_runs_and_sessions(tiny_wan_pipe, tiny_card):
    config = parse_cache_config({"method": "teacache", "threshold": TEACACHE_REUSING}, tiny_card)
    with apply_cache(tiny_wan_pipe, tiny_card, config) as session:
        first = run_latents(tiny_wan_pipe)
        after_first = session.stats()
        second = run_latents(tiny_wan_pipe)
        after_second = session.stats()
    with apply_cache(tiny_wan_pipe, tiny_card, config) as session:
        third = run_latents(tiny_wan_pipe)
        fresh = session.stats()
    assert torch.equal(first, second) and torch.equal(first, third)
    assert after_second["steps_reused"] == 2 * after_first["steps_reused"] > 0
    assert fresh["steps_reused"] == after_first["steps_reused"]


def test_cond_and_uncond_keep_separate_state(tiny_wan_pipe, tiny_card):
    transformer = tiny_wan_pipe.transformer
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 3, 6, 8, generator=generator)
    cond, uncond = torch.randn(2, 1, 5, 32, generator=generator).unbind(0)

    def forward(branch: str, step: int, text: torch.Tensor) -> torch.Tensor:
        timestep = torch.tensor([999.0 - 100 * step])
        with transformer.cache_context(branch, step_index=step, num_inference_steps=10):
            return transformer(latents, timestep, text, return_dict=False)[0]

    plain = {(b, s): forward(b, s, t) for b, t in (("cond", cond), ("uncond", uncond)) for s in (0, 1)}
    config = CacheConfig(method="teacache", threshold=3.0)
    with apply_cache(tiny_wan_pipe, tiny_card, config) as session:
        cached = {(b, s): forward(b, s, t) for s in (0, 1) for b, t in (("cond", cond), ("uncond", uncond))}
        stats = session.stats()
    assert torch.equal(cached["cond", 0], plain["cond", 0])
    assert torch.equal(cached["uncond", 0], plain["uncond", 0])  # not cond's residual
    assert not torch.equal(cached["cond", 1], plain["cond", 1])  # reused its own step-0 residual
    assert not torch.equal(cached["cond", 1], cached["uncond", 1])
    assert stats["branches"]["transformer/cond"] == {"steps_computed": 1, "steps_reused": 1}
    assert stats["branches"]["transformer/uncond"] == {"steps_computed": 1, "steps_reused": 1}


@pytest.mark.parametrize(
    "cache",
    [
        {"method": "first_block", "threshold": 0.3},
        {"method": "mag", "preset": "faster"},
        {"method": "taylorseer"},
    ],
    ids=["first_block", "mag", "taylorseer"],
)
def test_diffusers_methods_run_through_the_same_interface(tiny_wan_pipe, tiny_card, baseline, cache):
    latents, stats, block_calls = cached_run(tiny_wan_pipe, tiny_card, cache)
    assert stats["method"] == cache["method"] and stats["threshold"] is not None
    assert stats["steps_computed"] + stats["steps_reused"] == 2 * STEPS
    assert stats["steps_reused"] > 0
    assert block_calls < 2 * STEPS * len(tiny_wan_pipe.transformer.blocks)
    assert latents.shape == baseline.shape and torch.isfinite(latents).all()
    assert not tiny_wan_pipe.transformer.is_cache_enabled


def test_session_leaves_the_pipeline_as_before(tiny_wan_pipe, tiny_card, baseline):
    transformer = tiny_wan_pipe.transformer
    before = {name for name, m in transformer.named_modules() if hasattr(m, "_diffusers_hook")}
    for method in ("teacache", "first_block", "mag", "taylorseer"):
        with apply_cache(tiny_wan_pipe, tiny_card, parse_cache_config({"method": method}, tiny_card)):
            run_latents(tiny_wan_pipe)
        after = {name for name, m in transformer.named_modules() if hasattr(m, "_diffusers_hook")}
        assert after == before
        assert not any("forward" in vars(m) for m in transformer.modules())
    assert torch.equal(run_latents(tiny_wan_pipe), baseline)


def test_each_expert_gets_its_own_state(tiny_moe_pipe, tiny_card):
    with apply_cache(tiny_moe_pipe, tiny_card, CacheConfig(method="teacache", threshold=0.0)) as session:
        run_latents(tiny_moe_pipe)
        stats = session.stats()
    assert set(stats["branches"]) == {
        "transformer/cond",
        "transformer/uncond",
        "transformer_2/cond",
        "transformer_2/uncond",
    }
    assert stats["steps_computed"] == 2 * STEPS
    assert not hasattr(tiny_moe_pipe.transformer_2.blocks[0], "_diffusers_hook")


def test_planned_threshold_reuses_what_the_replay_predicts(tiny_wan_pipe, tiny_card):
    from core.caches.config import calibration_for
    from core.caches.teacache import plan_reuse, threshold_for_reuse

    calibration = calibration_for(tiny_card).teacache
    scheduler = tiny_wan_pipe.scheduler
    scheduler.set_timesteps(STEPS)
    threshold = threshold_for_reuse(tiny_wan_pipe.transformer, calibration, scheduler.timesteps, 0.5)
    plan = plan_reuse(tiny_wan_pipe.transformer, calibration, scheduler.timesteps, threshold)
    assert sum(plan) >= STEPS / 2 and not plan[0] and not plan[-1]
    _, stats, _ = cached_run(tiny_wan_pipe, tiny_card, {"method": "teacache", "threshold": threshold})
    for branch in ("transformer/cond", "transformer/uncond"):
        assert stats["branches"][branch]["steps_reused"] == sum(plan)


def test_reuse_decision_accumulates_the_rescaled_change():
    decision = ReuseDecision(threshold=0.25, coefficients=(2.0, 0.0))  # rescale(x) = 2x
    base = torch.ones(4)
    assert not decision.should_reuse(base)  # nothing to compare with yet
    assert decision.should_reuse(base * 1.05)  # 2 * 0.05 = 0.1 < 0.25
    assert decision.accumulated == pytest.approx(0.1, rel=1e-4)
    assert not decision.should_reuse(base * 1.05 * 1.1)  # 0.1 + 0.2 >= 0.25: compute, restart
    assert decision.accumulated == 0.0
    assert not decision.should_reuse(base, force_compute=True)
    signed = ReuseDecision(threshold=0.0, coefficients=(1.0, -5.0))  # rescale(x) = x - 5 < 0: reused
    assert not signed.should_reuse(base) and signed.should_reuse(base)
    assert signed.accumulated == pytest.approx(-5.0)
    never = ReuseDecision(threshold=0.0, coefficients=(1.0, -5.0), absolute=True)  # |x - 5| never helps
    assert not never.should_reuse(base) and not never.should_reuse(base)
    assert rescale((1.0, 2.0, 3.0), 2.0) == 11.0 and rescale((), 0.3) == 0.3
    assert relative_l1(torch.full((3,), 2.0), torch.ones(3)) == 1.0


def test_parse_resolves_presets_per_model(tiny_card):
    small = get_card("wan2.1-t2v-1.3b")
    assert parse_cache_config(None, small) == CacheConfig() == parse_cache_config({}, small)
    assert parse_cache_config({"preset": "off"}, small) == CacheConfig(preset="off")
    assert parse_cache_config({"preset": "fast"}, small) == CacheConfig(method="teacache", threshold=0.08)
    assert parse_cache_config({"preset": "faster"}, get_card("wan2.1-t2v-14b")).threshold == 0.30
    assert parse_cache_config({"method": "mag"}, small) == CacheConfig(method="mag", threshold=0.12)
    assert parse_cache_config({"method": "taylorseer", "preset": "faster"}, small).threshold == 5
    assert parse_cache_config({"method": "first_block", "threshold": 0.2}, small).threshold == 0.2
    assert parse_cache_config({"preset": "fast"}, tiny_card).threshold == 1.2


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ({"method": "turbo"}, "cache method must be one of none, teacache"),
        ({"method": "teacache", "threshold": -0.1}, "teacache threshold must be between 0.0 and 10.0"),
        ({"method": "teacache", "threshold": "high"}, "teacache threshold must be a number"),
        ({"method": "taylorseer", "threshold": 2.5}, "refresh interval in steps) must be a whole number"),
        ({"method": "none", "threshold": 0.1}, "a cache threshold needs a method"),
        ({"method": "mag", "threshold": 0.1, "preset": "fast"}, "either a cache threshold or a speed preset"),
        ({"preset": "ludicrous"}, "cache preset must be one of off, fast, faster"),
        ({"preset": "off", "method": "mag"}, "'off' cannot be combined"),
        ({"speed": "fast"}, "unknown field(s) speed"),
    ],
)
def test_bad_cache_configs_give_clear_errors(tiny_card, cache, message):
    with pytest.raises(ConfigError) as error:
        parse_cache_config(cache, tiny_card)
    assert message in str(error.value)


def test_methods_without_calibration_are_refused():
    with pytest.raises(ConfigError, match=r"mag needs magnitude ratios calibrated for Wan2\.2 T2V A14B"):
        parse_cache_config({"method": "mag"}, get_card("wan2.2-t2v-a14b"))
    assert parse_cache_config({"preset": "fast"}, get_card("wan2.2-t2v-a14b")).method == "teacache"


def test_ui_controls_map_to_cache_dicts():
    from core.facade.encode import step_cache as cache_dict_from_controls
    from core.facade.inputs import t2v_inputs

    inputs = t2v_inputs([get_card("wan2.1-t2v-1.3b")], several_gpus=False)
    speed, method, threshold = (inputs[name] for name in ("speed_preset", "method", "threshold"))
    assert speed["value"] == "Off" and method["value"] == "auto" and threshold["value"] is None
    assert cache_dict_from_controls("Off", "auto", None) is None
    assert cache_dict_from_controls("Faster", "auto", None) == {"preset": "faster"}
    assert cache_dict_from_controls("Fast", "mag", None) == {"method": "mag", "preset": "fast"}
    assert cache_dict_from_controls("Off", "teacache", 0.1) == {"method": "teacache", "threshold": 0.1}
    assert cache_dict_from_controls("Off", "first_block", None) == {"method": "first_block", "preset": "fast"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_teacache_on_cuda(tiny_wan_pipe, tiny_card):
    tiny_wan_pipe.to("cuda")
    try:
        baseline = run_latents(tiny_wan_pipe)
        with apply_cache(tiny_wan_pipe, tiny_card, CacheConfig(method="teacache", threshold=0.0)):
            assert torch.equal(run_latents(tiny_wan_pipe), baseline)
        with apply_cache(tiny_wan_pipe, tiny_card, CacheConfig(method="teacache", threshold=3.0)) as session:
            run_latents(tiny_wan_pipe)
            assert session.stats()["steps_reused"] > 0
    finally:
        tiny_wan_pipe.to("cpu")
