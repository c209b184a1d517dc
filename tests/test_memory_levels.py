"""Every memory level on the tiny Wan pipeline (CPU): the level-0 video, the right placement, OOM retry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from diffusers.hooks import HookRegistry

from core.device_models import DeviceModels
from core.memory.apply import apply_memory_level
from core.memory.chunking import HOOK_NAME, apply_token_chunking
from core.memory.oom import run_with_oom_retry
from core.memory.planner import plan_memory
from core.pipelines import load_diffusers_pipeline
from core.settings import Settings

pytest_plugins = ["tests.conftest_memory"]

CPU = torch.device("cpu")
LOSSLESS_TOLERANCE = 1e-5  # float32 on the CPU: only summation order may change
FP8_TOLERANCE = 0.1  # frames are in [0, 1]; float8 e4m3 weights measured ~0.03 on the tiny model
CHUNK = 8  # the tiny model sees 36 tokens: 5 slices


def load(folder, level: int):
    """The tiny pipeline in float32 at ``level`` on the CPU, with slices small enough to really chunk."""
    pipe = WanPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    apply_memory_level(pipe, level, CPU, chunk_tokens=CHUNK)
    return pipe


@pytest.fixture(scope="module")
def at_level(tiny_wan_folder, render):
    """``at_level(n)`` -> (pipeline, video) at level n, each built once per module."""
    made = {}

    def get(level: int):
        if level not in made:
            pipe = load(tiny_wan_folder, level)
            made[level] = (pipe, render(pipe))
        return made[level]

    return get


@pytest.fixture(scope="module")
def reference(at_level):
    return at_level(0)[1]


@pytest.mark.parametrize(
    ("level", "tolerance"),
    [
        (1, LOSSLESS_TOLERANCE),
        (2, LOSSLESS_TOLERANCE),
        (3, LOSSLESS_TOLERANCE),
        (4, LOSSLESS_TOLERANCE),
        (5, FP8_TOLERANCE),
        (6, FP8_TOLERANCE),
    ],
)
def test_every_level_makes_the_level_0_video(at_level, reference, level, tolerance):
    video = at_level(level)[1]
    assert video.shape == reference.shape == (9, 48, 64, 3)
    assert float(np.abs(video - reference).max()) <= tolerance


def test_chunking_is_exact_on_top_of_fp8(at_level):
    assert np.abs(at_level(6)[1] - at_level(5)[1]).max() <= LOSSLESS_TOLERANCE


def test_levels_place_components_as_documented(at_level):
    low = at_level(0)[0]
    assert not low.vae.use_tiling and low.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.float32
    pipe = at_level(6)[0]
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    assert pipe.text_encoder.device == CPU
    block = pipe.transformer.blocks[0]
    assert HookRegistry.check_if_exists_or_initialize(block).get_hook("group_offloading") is not None
    assert block.ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
    assert pipe.transformer.patch_embedding.weight.dtype == torch.float32  # diffusers keeps embeddings wide
    registry = HookRegistry.check_if_exists_or_initialize(block)
    assert registry.get_hook(HOOK_NAME) is not None
    assert registry._hook_order.index(HOOK_NAME) < registry._hook_order.index("group_offloading")


@pytest.mark.parametrize("per_token_timestep", [False, True], ids=["wan2.1", "ti2v-per-token"])
def test_token_chunking_splits_tokens_and_keeps_the_output(tiny_wan_folder, per_token_timestep):
    """Every block runs in slices (the feed-forward sees 8, 8, 8, 8, 4 of the 36 tokens), with the same
    output; Wan2.2 TI2V's per-token timesteps slice the modulation too."""
    model = WanTransformer3DModel.from_pretrained(tiny_wan_folder, subfolder="transformer").eval()
    torch.manual_seed(0)
    latents = torch.randn(1, 16, 3, 6, 8)
    text = torch.randn(1, 7, model.config.text_dim)
    timestep = torch.linspace(0, 900, 36)[None] if per_token_timestep else torch.tensor([500])
    with torch.no_grad():
        plain = model(latents, timestep, text, return_dict=False)[0]
        assert apply_token_chunking(model, chunk_tokens=CHUNK) == len(model.blocks)
        calls = []
        handle = model.blocks[0].ffn.net[0].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[1]))
        chunked = model(latents, timestep, text, return_dict=False)[0]
        handle.remove()
        model_whole = WanTransformer3DModel.from_pretrained(tiny_wan_folder, subfolder="transformer").eval()
        apply_token_chunking(model_whole, chunk_tokens=64)  # more than the video's tokens: the block as is
        assert torch.equal(model_whole(latents, timestep, text, return_dict=False)[0], plain)
    assert calls == [8, 8, 8, 8, 4]  # 3 x 3 x 4 = 36 tokens
    torch.testing.assert_close(chunked, plain, rtol=0, atol=1e-5)


def test_pipeline_cache_reloads_when_the_level_changes(tiny_card, tiny_wan_folder):
    loads = []

    def loader(card, folder, device, level):
        loads.append(level)
        return object()

    cache = DeviceModels(CPU, Settings(), loader)
    first = cache.get(tiny_card, tiny_wan_folder)
    assert cache.get(tiny_card, tiny_wan_folder, 0) is first
    second = cache.get(tiny_card, tiny_wan_folder, 4)
    assert second is not first and loads == [0, 4] and cache.loaded_level == 4


def test_oom_steps_up_one_level_and_succeeds(tiny_card, tiny_wan_folder, render, reference, fake_hardware):
    """A run that (pretends to) run out of memory at level 0 is reloaded at level 1 and completes."""
    cache = DeviceModels(CPU, Settings(), load_diffusers_pipeline)
    plan = plan_memory(tiny_card, 64, 48, 9, fake_hardware(None, 8.0))
    state = {"level": plan.level}
    cache.get(tiny_card, tiny_wan_folder, plan.level)
    messages = []

    def generate():
        pipe = cache.get(tiny_card, tiny_wan_folder, state["level"])
        if state["level"] == 0:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return render(pipe)

    def reapply(level):
        state["level"] = level
        cache.get(tiny_card, tiny_wan_folder, level)

    video = run_with_oom_retry(generate, plan, reapply, messages.append)
    assert cache.loaded_level == 1 and len(messages) == 1 and "retrying once at level 1" in messages[0]
    assert np.abs(video - reference).max() <= LOSSLESS_TOLERANCE


def test_oom_twice_releases_the_pipeline_and_raises(tiny_card, fake_hardware):
    plan = plan_memory(tiny_card, 64, 48, 9, fake_hardware(None, 8.0), override=3)
    reapplied, released = [], []

    def always_oom():
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError, match="again at level 4"):
        run_with_oom_retry(always_oom, plan, reapplied.append, print, release=lambda: released.append(1))
    assert reapplied == [4] and released == [1]


def test_oom_at_the_top_level_does_not_retry(tiny_card, fake_hardware):
    plan = plan_memory(tiny_card, 64, 48, 9, fake_hardware(None, 8.0), override="6")
    reapplied = []

    def always_oom():
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError, match="lowest-memory level 6"):
        run_with_oom_retry(always_oom, plan, reapplied.append, lambda m: None)
    assert reapplied == []


def test_real_loader_applies_a_level(tiny_card, tiny_wan_folder):
    pipe = load_diffusers_pipeline(tiny_card, tiny_wan_folder, CPU, level=5)
    assert pipe.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
