"""The estimator against the measured figures, the planner's choices on fake machines, overrides, UI text."""

from __future__ import annotations

import itertools
import os

import pytest

from core.memory.estimate import estimate_memory, load_calibration
from core.memory.levels import LEVELS, MAX_LEVEL, check_level, configure_allocator, parse_override
from core.memory.planner import plan_memory
from core.validation import ConfigError
from weights.registry import get_card

pytest_plugins = ["conftest_memory"]

WAN_1_3B = get_card("wan2.1-t2v-1.3b")
WAN_14B = get_card("wan2.1-t2v-14b")
WAN_A14B = get_card("wan2.2-t2v-a14b")
P480 = (832, 480, 81)
P720 = (1280, 720, 81)


def test_levels_are_numbered_in_order():
    assert [lv.number for lv in LEVELS] == list(range(7)) and MAX_LEVEL == 6


@pytest.mark.parametrize(
    ("latent", "measured"), [((21, 60, 104), 5.3), ((21, 90, 160), 9.8)], ids=["480p", "720p"]
)
def test_group_offload_estimate_matches_measured_peak(latent, measured):
    """Level 4 DiT working set (batch 1) vs diffusers group offload measured on an H100; not fitted to."""
    frames, height, width = latent
    est = estimate_memory(WAN_14B, width * 8, height * 8, (frames - 1) * 4 + 1, 4)
    assert est.dit_working_gib == pytest.approx(measured, rel=0.05)


def test_fp8_storage_estimate_matches_measured_peak():
    """fp8 storage all on the GPU at batch 2 measured 20.53 GiB: fp8 weights (the 0.235 B params
    layerwise casting leaves wide stay bf16) + twice batch-1 activations."""
    fp8_dit = estimate_memory(WAN_14B, *P480, 5).dit_host_weights_gib
    assert fp8_dit == pytest.approx((14.2885 + 0.23518) * 1e9 / 2**30, rel=1e-4)
    batch_1_activations = estimate_memory(WAN_14B, *P480, 0).activations_gib
    assert fp8_dit + 2 * batch_1_activations == pytest.approx(20.53, rel=0.05)


def test_vae_decode_estimates_reproduce_measured():
    assert estimate_memory(WAN_14B, *P480, 0).decode_gib == pytest.approx(4.7, abs=0.01)
    assert estimate_memory(WAN_14B, *P480, 1).decode_gib == pytest.approx(1.2, abs=0.01)


def test_estimates_fall_with_level_and_chunking_never_raises_activations():
    for card in (WAN_1_3B, WAN_14B):
        vram = [estimate_memory(card, *P720, n).vram_gib for n in range(7)]
        assert all(a >= b for a, b in itertools.pairwise(vram))
    cal = load_calibration()
    chunked = estimate_memory(WAN_14B, *P720, 6)
    units = min(cal.c_chunk, cal.c_base + cal.c_ffn * 13824 / 5120)
    assert chunked.activations_gib == pytest.approx(chunked.tokens * 5120 * 2 * units / 2**30)


@pytest.mark.parametrize(("size", "level", "measured"), [(P480, 4, 1.77), (P480, 5, 1.68), (P480, 6, 1.25),
                                                          (P720, 4, 3.74), (P720, 5, 3.65), (P720, 6, 2.64)])
def test_offloaded_1_3b_peaks_within_10_percent_of_measured(size, level, measured):
    """docs/bench-logs/memory_1.3b_h100.log (H100, batch 1); level 6's two rows fit c_chunk."""
    assert estimate_memory(WAN_1_3B, *size, level).dit_peak_gib == pytest.approx(measured, rel=0.1)


def test_low_ram_levels_need_the_final_footprint_not_the_bf16_model():
    bf16 = estimate_memory(WAN_14B, *P480, 2)
    fp8 = estimate_memory(WAN_14B, *P480, 5, map_fp8=False)
    assert bf16.load_ram_gib > 39 and fp8.load_ram_gib < 17
    assert fp8.load_ram_gib == pytest.approx(2.0 + fp8.dit_host_weights_gib + 0.47 + 1 / 16, abs=0.02)
    assert fp8.mapped_gib == pytest.approx(5.6809e9 * 2 / 2**30)  # the text encoder, mapped from its files
    assert estimate_memory(WAN_A14B, *P480, 5, map_fp8=False).ram_gib < 32 * 1e9 / 2**30  # two fp8 experts


def test_mapped_fp8_dit_leaves_ram_for_16_gb_machines():
    """The goal: Wan2.1 14B 480p 81 frames with <= 16 GB (14.9 GiB) of host RAM. With the fp8 DiT mapped
    from its cache file, RAM keeps the process, the VAE, group offload's pinned copies (power-of-two
    buffers of two blocks and the wide layers) and, on first load, one converted tensor."""
    mapped = estimate_memory(WAN_14B, *P480, 5)
    in_ram = estimate_memory(WAN_14B, *P480, 5, map_fp8=False)
    encoder = 5.6809e9 * 2 / 2**30
    assert mapped.ram_gib <= 16e9 / 2**30 and in_ram.ram_gib > 16e9 / 2**30
    assert mapped.mapped_gib == pytest.approx(encoder + in_ram.dit_host_weights_gib)
    pinned = 2 * (8 * 32 + 2 * 128) / 1024 + 2 * 0.23518e9 * 2 / 2**30  # 32 and 128 MiB buffers
    assert mapped.host_weights_gib == pytest.approx(pinned)
    assert mapped.ram_gib == pytest.approx(2.0 + pinned)
    assert mapped.load_ram_gib == pytest.approx(2.0 + 0.47 + 1 / 16 + 6 * 5120**2 * 2 / 2**30, abs=0.01)
    assert estimate_memory(WAN_14B, *P480, 5, "cpu").mapped_gib == pytest.approx(encoder * 2)  # fp32, no DiT


def test_cpu_estimate_uses_float32_and_no_vram():
    cpu = estimate_memory(WAN_1_3B, *P480, 0, "cpu")
    gpu = estimate_memory(WAN_1_3B, *P480, 0, "cuda")
    assert cpu.vram_gib == 0 and cpu.ram_gib > gpu.ram_gib


PROFILES = [
    # model, size, free VRAM, RAM, expected level, fits
    (WAN_14B, P480, 80.0, 128.0, 0, True),
    (WAN_14B, P480, 40.0, 64.0, 2, True),
    (WAN_14B, P480, 24.0, 64.0, 4, True),
    (WAN_14B, P480, 7.0, 64.0, 5, True),
    (WAN_14B, P480, 6.0, 64.0, 6, False),  # chunking as measured on the 1.3B saves nothing on the 14B
    (WAN_14B, P480, 7.0, 14.9, 5, True),  # 16 GB: the fp8 DiT is mapped from disk, ~3.9 GiB private
    (WAN_14B, P480, 7.0, 3.0, 5, False),
    (WAN_14B, P720, 12.0, 64.0, 6, False),  # level 4 peaks ~9.8 GiB: too tight under 12 (measured OOM)
    (WAN_14B, P720, 16.0, 64.0, 4, True),
    (WAN_A14B, P480, 7.0, 32.0, 5, True),  # two fp8 experts, mapped from disk
    (WAN_1_3B, P480, 24.0, 32.0, 0, True),
    (WAN_1_3B, P480, 8.0, 32.0, 2, True),
    (WAN_1_3B, P480, 4.0, 32.0, 4, True),
]


@pytest.mark.parametrize(("card", "size", "vram", "ram", "level", "fits"), PROFILES)
def test_planner_picks_lowest_level_that_fits(card, size, vram, ram, level, fits, fake_hardware):
    plan = plan_memory(card, *size, fake_hardware(vram, ram))
    assert (plan.level, plan.fits, plan.device, plan.chosen_by) == (level, fits, "cuda:0", "auto")
    assert f"Level {level}" in plan.reason
    if not fits:
        assert "RAM" in plan.reason or "may run out" in plan.reason


def test_planner_level_never_falls_as_free_vram_shrinks(fake_hardware):
    free = (80, 48, 32, 24, 16, 12, 8, 6)
    levels = [plan_memory(WAN_14B, *P720, fake_hardware(v, 64.0)).level for v in free]
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == 6


def test_cpu_only_machine_runs_level_0_on_cpu(fake_hardware):
    plan = plan_memory(get_card("tiny-wan"), 64, 48, 9, fake_hardware(None, 8.0))
    assert (plan.level, plan.device, plan.fits, plan.free_vram_gb) == (0, "cpu", True, None)


def test_override_is_kept_even_when_it_will_not_fit(fake_hardware):
    plan = plan_memory(WAN_14B, *P480, fake_hardware(8.0, 64.0), override="1")
    assert (plan.level, plan.chosen_by, plan.fits) == (1, "user", False)
    assert "choose Auto or a higher level" in plan.reason
    assert plan_memory(WAN_14B, *P480, fake_hardware(80.0, 64.0), override=5).level == 5


@pytest.mark.parametrize("bad", ["7", -1, 2.5, "fast", True, [1]])
def test_bad_override_is_a_clear_error(bad, fake_hardware):
    with pytest.raises(ConfigError, match="'auto' or a whole number from 0 to 6"):
        plan_memory(WAN_14B, *P480, fake_hardware(24.0, 64.0), override=bad)


def test_override_parsing_accepts_auto_and_numbers():
    assert parse_override("Auto") is None and parse_override(None) is None
    assert parse_override(" 4 ") == 4 and parse_override(3.0) == 3 and check_level(6) == 6


def test_unknown_gpu_index_is_a_clear_error(fake_hardware):
    with pytest.raises(ConfigError, match="no GPU 3"):
        plan_memory(WAN_14B, *P480, fake_hardware(24.0, 64.0), gpu_index=3)


def test_configure_allocator_sets_expandable_segments_before_cuda(monkeypatch):
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    assert configure_allocator()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    assert not configure_allocator()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"


def test_memory_panel_text_and_choices(fake_hardware):
    import gradio as gr

    from ui.memory_panel import build_memory_panel, describe_plan, level_choices

    assert [value for _, value in level_choices()] == ["auto", *map(str, range(7))]
    with gr.Blocks():
        dropdown, markdown = build_memory_panel()
    assert dropdown.value == "auto" and isinstance(markdown, gr.Markdown)
    text = describe_plan(plan_memory(WAN_14B, *P480, fake_hardware(6.0, 16.0)))
    assert "Memory level 6" in text and "⚠️" in text and "RAM" in text
    assert "mapped from disk: 24.1 GB (more than RAM can cache" in text  # 13.5 fp8 DiT + 10.6 encoder
    roomy = plan_memory(WAN_14B, *P480, fake_hardware(7.0, 64.0))
    assert roomy.mapped_gb == pytest.approx(24.11, abs=0.01) and "slower" not in describe_plan(roomy)
    assert "✅" in describe_plan(plan_memory(get_card("tiny-wan"), 64, 48, 9, fake_hardware(None, 8.0)))
