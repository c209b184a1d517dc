"""The chunk-wise cache on the tiny SkyReels-V2 DF model: off at threshold 0, fewer chunk-steps above it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.hooks import HookRegistry
from PIL import Image

from core.chunk_cache import apply_chunk_cache
from core.pipelines import load_diffusers_pipeline
from weights.registry import get_card

pytest_plugins = ["tests.conftest_continue"]

SYNCHRONOUS: dict = {}
CAUSAL = {"ar_step": 2, "causal_block_size": 2, "overlap_history": 5, "base_num_frames": 29}


@pytest.fixture(scope="module")
def pipe(continue_models_dir: Path):
    return load_diffusers_pipeline(
        get_card("tiny-skyreels-df"), continue_models_dir / "tiny-skyreels-df", torch.device("cpu")
    )


def generate(pipe, cache: dict | None, **fields) -> tuple[torch.Tensor, dict | None]:
    """Latents of a 3-latent-frame continuation of a fixed random context (no VAE decode, to stay fast)."""
    settings = {"ar_step": 0, "causal_block_size": 1, "overlap_history": 9, "base_num_frames": 17} | fields
    overlap = settings["overlap_history"]
    rng = np.random.default_rng(0)
    context = [Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)) for _ in range(overlap)]
    torch.manual_seed(0)
    call = dict(
        video=context,
        prompt="a cat",
        height=32,
        width=48,
        num_frames=overlap + 12,
        num_inference_steps=6,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
        addnoise_condition=20,
        **settings,
    )
    if cache is None:
        return pipe(**call).frames, None
    with apply_chunk_cache(pipe, **cache) as session:
        latents = pipe(**call).frames
    return latents, session.stats()


def hooks_left(pipe) -> list[str]:
    modules = [pipe.transformer, *pipe.transformer.blocks]
    return [name for m in modules for name in HookRegistry.check_if_exists_or_initialize(m).hooks]


@pytest.mark.parametrize("fields", [SYNCHRONOUS, CAUSAL], ids=["synchronous", "causal"])
def test_threshold_zero_equals_no_cache_and_a_positive_one_computes_fewer_chunk_steps(
    pipe, fields: dict
) -> None:
    plain, _ = generate(pipe, None, **fields)
    exact, exact_stats = generate(pipe, {"threshold": 0.0}, **fields)
    cached, stats = generate(pipe, {"threshold": 0.3, "warmup": 1}, **fields)

    assert torch.equal(plain, exact)
    assert exact_stats["chunk_steps_reused"] == 0 and exact_stats["token_fraction_computed"] == 1.0
    assert stats["chunk_steps_computed"] < exact_stats["chunk_steps_computed"]
    assert stats["chunk_steps_reused"] > 0
    assert stats["chunk_steps_computed"] + stats["chunk_steps_reused"] == exact_stats["chunk_steps_computed"]
    assert stats["token_fraction_computed"] < 1.0
    assert cached.shape == plain.shape and torch.isfinite(cached).all()
    assert hooks_left(pipe) == []


def test_causal_mode_skips_trailing_chunks_without_skipping_whole_calls(pipe) -> None:
    _, stats = generate(pipe, {"threshold": 0.3, "warmup": 1}, **CAUSAL)
    assert stats["chunk_steps_reused"] > 0
    assert stats["calls_skipped"] < stats["calls"]


def test_session_removes_its_hooks_and_refuses_bad_settings(pipe) -> None:
    with apply_chunk_cache(pipe, 0.1) as session:
        assert "chunk_cache_root" in HookRegistry.check_if_exists_or_initialize(pipe.transformer).hooks
        assert session.stats()["calls"] == 0
    assert hooks_left(pipe) == []
    with pytest.raises(ValueError, match="threshold >= 0"):
        apply_chunk_cache(pipe, -0.5)


def test_policy_accumulates_rescaled_changes_and_never_lets_a_fit_lower_the_sum() -> None:
    from core.chunk_cache import _Chunk, _Policy

    policy = _Policy(
        threshold=0.25,
        warmup=1,
        coefficients=[-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02],
    )
    assert policy.rescale(0.05) == pytest.approx(0.1419, abs=1e-3)
    assert policy.rescale(0.2) == 0.2  # the fit is negative there: the raw distance counts
    chunk = _Chunk()
    decisions = [policy.decide(chunk, d, last_step=False) for d in (None, 0.05, 0.05, 0.05, 0.0)]
    assert decisions == [True, True, False, True, True]  # first, warmup, 0.14 < 0.25, 0.28 >= 0.25, unchanged
    assert policy.decide(chunk, 0.01, last_step=True) is True


def test_cache_runs_on_a_bf16_pipeline(continue_models_dir: Path) -> None:
    """As on a GPU: bf16 layers beside the float32 time embedder diffusers keeps."""
    bf16 = load_diffusers_pipeline(
        get_card("tiny-skyreels-df"), continue_models_dir / "tiny-skyreels-df", torch.device("cpu")
    )
    bf16.transformer.to(torch.bfloat16)
    for module in bf16.transformer.condition_embedder.time_embedder.modules():
        module.float()
    latents, stats = generate(bf16, {"threshold": 0.1})
    assert torch.isfinite(latents.float()).all() and stats["chunk_steps_computed"] > 0
