"""MAGI-1 schedule (window stages, timesteps) and the chunk generation loop on the tiny DiT.

The DiT itself (checkpoint layout, loading, attention) is tested in ``test_magi_dit.py``."""

from __future__ import annotations

import pytest
import torch

from core.magi.dit import SlotReuse
from core.magi.generate import generate
from core.magi.hooks import NoStepHooks
from core.magi.loading import load_magi_dit
from core.magi.schedule import MagiRunConfig, timesteps, window_steps
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_magi"]


# ---- schedule ---------------------------------------------------------------------------------------------


def _official_stages(chunk_num, window, offset):
    """Stage table of the official ``generate_sequences`` (clip start/end, level range)."""
    rows = []
    for i in range(offset, chunk_num + window - 1):
        t_end = min(window, i - offset + 1)
        rows.append((max(offset, i - window + 1), min(chunk_num, i + 1), max(0, i - chunk_num + 1), t_end))
    return rows


@pytest.mark.parametrize(
    ("chunks", "window", "offset"), [(8, 4, 0), (8, 4, 2), (8, 1, 0), (3, 4, 0), (5, 2, 1)]
)
def test_window_stages_match_the_official_sequences(chunks, window, offset):
    steps = 8
    plan = window_steps(chunks, offset, window, steps)
    per_stage = steps // window
    stages = _official_stages(chunks, window, offset)
    assert len(plan) == per_stage * len(stages)
    for step in plan:
        start, end, t_start, t_end = stages[step.stage]
        assert step.chunks == tuple(range(start, end))
        levels = list(reversed(range(t_start, t_end)))
        assert step.chunk_steps == tuple(level * per_stage + step.step_in_stage for level in levels)
    finished = [s.finished for s in plan if s.finished is not None]
    assert finished == list(range(offset, chunks))


def test_timesteps_follow_the_sd3_shift_schedule():
    run = MagiRunConfig()
    t = timesteps(8, run)
    raw = torch.linspace(0, 1, 9) ** 2
    assert torch.allclose(t, raw / 3 / (1 + (1 / 3 - 1) * raw))
    twelve = timesteps(12, run)
    assert twelve.shape == (13,) and twelve[0] == 0 and abs(float(twelve[-1]) - 1) < 1e-6
    assert bool((twelve.diff() > 0).all())
    with pytest.raises(ConfigError, match="unknown field"):
        MagiRunConfig.from_dict({"window": 2})
    with pytest.raises(ConfigError, match="multiple of window_size"):
        run.check_steps(10, 4)


# ---- generation -----------------------------------------------------------------------------------------


class CallLog(NoStepHooks):
    def __init__(self):
        self.calls = []

    def after_forward(self, context, output):
        self.calls.append((context.step, context.branch, context.chunks))


def test_t2v_gives_each_chunk_as_soon_as_it_is_clean(distill_dit, vae, caption):
    events = []
    video = generate(
        distill_dit,
        vae,
        *caption,
        num_chunks=3,
        height=32,
        width=32,
        steps=8,
        guidance=1.0,
        seed=0,
        on_chunk=lambda index, frames: events.append(("chunk", index, tuple(frames.shape))),
        on_step=lambda step, total: events.append(("step", step, total)),
    )
    assert video.shape == (72, 32, 32, 3) and float(video.min()) >= 0 and float(video.max()) <= 1
    chunks = [e for e in events if e[0] == "chunk"]
    assert chunks == [("chunk", i, (24, 32, 32, 3)) for i in range(3)]
    steps_before = [sum(1 for e in events[: events.index(c)] if e[0] == "step") for c in chunks]
    assert steps_before == [7, 9, 11]  # 12 steps; chunk 0 is out right after step 8 of 12
    with pytest.raises(ConfigError, match="guidance 1"):
        generate(distill_dit, vae, *caption, num_chunks=1, height=32, width=32, steps=8, guidance=5.0, seed=0)
    with pytest.raises(ConfigError, match="multiples of 16"):
        generate(distill_dit, vae, *caption, num_chunks=1, height=40, width=32, steps=8, guidance=1.0, seed=0)
    again = generate(
        distill_dit, vae, *caption, num_chunks=3, height=32, width=32, steps=8, guidance=1.0, seed=0
    )
    assert torch.equal(video, again)


def test_v2v_keeps_the_prefix_and_adds_chunks(distill_dit, vae, caption):
    prefix = torch.rand(32, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    seen, stats = [], {}
    video = generate(
        distill_dit,
        vae,
        *caption,
        num_chunks=2,
        height=32,
        width=32,
        steps=8,
        guidance=1.0,
        seed=0,
        prefix_video=prefix,
        on_chunk=lambda index, frames: seen.append((index, frames.shape[0])),
        stats=stats,
    )
    # 32 frames -> 8 latent frames: one whole chunk cached, 2 frames pinned in the first new chunk
    assert seen == [(0, 16), (1, 24)]
    assert video.shape[0] == 32 + 16 + 24
    assert torch.equal(video[:32], prefix)
    assert stats["kv_chunks"] >= 1 and stats["kv_tokens"] > 0


def test_guidance_one_is_one_dit_call_per_step_and_guidance_runs_more(distill_dit, base_dit, vae, caption):
    single = CallLog()
    generate(
        distill_dit,
        vae,
        *caption,
        num_chunks=2,
        height=32,
        width=32,
        steps=8,
        guidance=1.0,
        seed=0,
        step_hooks=single,
    )
    per_step = {}
    for step, branch, _ in single.calls:
        per_step.setdefault(step, []).append(branch)
    assert all(branches == ["cond"] for branches in per_step.values()) and len(per_step) == 10
    guided = CallLog()
    generate(
        base_dit,
        vae,
        *caption,
        num_chunks=2,
        height=32,
        width=32,
        steps=8,
        guidance=7.5,
        seed=0,
        step_hooks=guided,
    )
    per_step = {}
    for step, branch, _ in guided.calls:
        per_step.setdefault(step, []).append(branch)
    # the null-caption branch always runs (it fills the KV cache); text and unconditional branches run
    # while a chunk of the window is below t=0.3, where the published scales use them
    assert all(b[0] == "null" for b in per_step.values()) and len(per_step) == 10
    assert per_step[0] == ["null", "cond", "uncond"]
    assert any(b == ["null"] for b in per_step.values())


def test_window_size_one_and_a_kv_policy(distill_dit, vae, caption):
    class KeepFirstTokens:
        def __init__(self):
            self.calls = []

        def compress(self, cache, layer):
            self.calls.append(layer)
            for chunk in cache.chunks:
                key, value = cache.entry(layer, chunk)
                cache.replace(layer, chunk, key[:, :, :5], value[:, :, :5])

    policy, stats, seen = KeepFirstTokens(), {}, []
    generate(
        distill_dit,
        vae,
        *caption,
        num_chunks=3,
        height=32,
        width=32,
        steps=8,
        guidance=1.0,
        seed=0,
        window_size=1,
        kv_policy=policy,
        stats=stats,
        on_chunk=lambda i, f: seen.append(i),
    )
    assert seen == [0, 1, 2]
    assert policy.calls == [0, 1, 2] * 2  # two finished chunks re-forwarded clean, three layers each
    assert stats["kv_tokens"] == 2 * 5 and stats["dit_calls"] == 3 * 8


def test_bfloat16_model_generates_with_float32_embedders(magi_folders, vae, caption):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dit = load_magi_dit(magi_folders["4.5B_distill_quant"], device=device, dtype=torch.bfloat16)
    video = generate(dit, vae, *caption, num_chunks=2, height=32, width=32, steps=8, guidance=1.0, seed=0)
    assert video.shape == (48, 32, 32, 3) and bool(torch.isfinite(video).all())


def test_step_hooks_can_reuse_a_chunk_from_its_modulated_input(distill_dit, vae, caption):
    class ReuseNoisiest:
        wants_kv = True

        def __init__(self):
            self.last = {}
            self.reused = []

        def select_reuse(self, context):
            features = context.modulated_input()
            assert len(features) == len(context.chunks)
            position = len(context.chunks) - 1
            if not context.denoising[position] or context.chunks[position] not in self.last:
                return {}
            self.reused.append((context.step, context.chunks[position]))
            output, kv = self.last[context.chunks[position]]
            return {position: SlotReuse(output=output, kv=kv)}

        def after_forward(self, context, output):
            width = output.velocity.shape[2] // len(context.chunks)
            for position, chunk in enumerate(context.chunks):
                if context.denoising[position] and position in output.kv:
                    span = slice(position * width, (position + 1) * width)
                    self.last[chunk] = (output.velocity[:, :, span], output.kv[position])

    hook, seen = ReuseNoisiest(), []
    generate(
        distill_dit,
        vae,
        *caption,
        num_chunks=3,
        height=32,
        width=32,
        steps=8,
        guidance=1.0,
        seed=0,
        step_hooks=hook,
        on_chunk=lambda i, f: seen.append(i),
    )
    assert seen == [0, 1, 2] and len(hook.reused) > 0
