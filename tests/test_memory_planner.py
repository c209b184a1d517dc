"""The estimator against the measured figures, the planner's choices on fake machines, overrides, UI text."""

from __future__ import annotations

import itertools
import os

import pytest

from core.memory.estimate import estimate_memory, load_calibration
from core.memory.levels import (
    DEFAULT_CHUNK_TOKENS,
    LEVELS,
    MAX_LEVEL,
    check_level,
    configure_allocator,
    parse_override,
)
from core.memory.planner import maps_fp8_dit, plan_memory
from core.validation import ConfigError
from weights.registry import get_card

pytest_plugins = ["tests.conftest_memory"]

WAN_1_3B = get_card("wan2.1-t2v-1.3b")
WAN_14B = get_card("wan2.1-t2v-14b")
WAN_A14B = get_card("wan2.2-t2v-a14b")
P480 = (832, 480, 81)
P720 = (1280, 720, 81)


@pytest.fixture(autouse=True)
def expandable_segments(monkeypatch):
    """As the app runs (``configure_allocator`` at start): the margin assumes expandable segments."""
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


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
    held = chunked.tokens * 5120 * 2 * cal.c_chunk
    working = DEFAULT_CHUNK_TOKENS * 13824 * 2 * cal.c_slice
    assert chunked.activations_gib == pytest.approx((held + working) / 2**30)
    assert chunked.activations_gib < estimate_memory(WAN_14B, *P720, 5).activations_gib


def test_chunking_fit_recovers_known_constants_and_needs_two_token_counts():
    from core.memory.estimate import _fit_chunking, _offload_extras_gib, dit_weights_gib

    shapes = load_calibration().shapes
    rows = []
    for model, latent in [("wan2.1-t2v-1.3b", (21, 60, 104)), ("wan2.1-t2v-14b", (21, 90, 160))]:
        shape = shapes[model]
        tokens = latent[0] * (latent[1] // 2) * (latent[2] // 2)
        extras = _offload_extras_gib(shape, dit_weights_gib(shape, 5, 2), 5)
        working = min(tokens, DEFAULT_CHUNK_TOKENS) * shape.ffn_dim
        peak = extras + (4.0 * tokens * shape.dim + 3.0 * working) * 2 / 2**30
        rows.append(
            {
                "what": "dit_forward",
                "model": model,
                "latent": list(latent),
                "batch": 1,
                "level": 6,
                "peak_gib": peak,
            }
        )
    assert _fit_chunking(rows, shapes) == pytest.approx((4.0, 3.0))
    with pytest.raises(ConfigError, match="at least two token counts"):
        _fit_chunking(rows[:1], shapes)


OFFLOADED_PEAKS = [  # docs/bench-logs/memory_*_h100.log (H100, batch 1, 81 frames)
    (WAN_1_3B, P480, (1.77, 1.68, 1.00)),
    (WAN_1_3B, P720, (3.74, 3.65, 1.54)),
    (WAN_14B, P480, (5.31, 4.65, 3.36)),
    (WAN_14B, P720, (9.85, 9.19, 5.04)),
]


@pytest.mark.parametrize(("card", "size", "measured"), OFFLOADED_PEAKS)
def test_offloaded_peaks_within_10_percent_of_measured(card, size, measured):
    """Levels 4, 5 and 6 against the H100 rows; level 6's four rows are what c_chunk and c_slice fit."""
    for level, peak in zip((4, 5, 6), measured, strict=True):
        assert estimate_memory(card, *size, level).dit_peak_gib == pytest.approx(peak, rel=0.1), level


@pytest.mark.parametrize(("size", "cap", "level"), [(P480, 6.0, 5), (P720, 10.0, 6)])
def test_planner_picks_a_level_that_ran_under_the_cap(size, cap, level, fake_hardware):
    """bench/memory.py on an H100: 14B level 5 ran under 6 GiB at 480p (1.18x level 0), level 6 under 10 GiB
    at 720p (1.14x); level 0-4 would not fit the planner's margin there."""
    plan = plan_memory(WAN_14B, *size, fake_hardware(cap, 120.0, total_vram_gb=cap))
    assert plan.level == level and plan.fits


def test_low_ram_levels_need_the_final_footprint_not_the_bf16_model():
    bf16 = estimate_memory(WAN_14B, *P480, 2)
    fp8 = estimate_memory(WAN_14B, *P480, 5, map_fp8=False)
    assert bf16.load_ram_gib > 39 and fp8.load_ram_gib < 17
    pinned = 14.0  # 13.59 GiB of fp8 weights carved from whole 1 GiB pinned buffers (14.06 GiB measured)
    assert fp8.load_ram_gib == pytest.approx(2.0 + pinned + 0.47 + 1 / 16, abs=0.02)
    assert fp8.mapped_gib == pytest.approx(5.6809e9 * 2 / 2**30)  # the text encoder, mapped from its files
    assert estimate_memory(WAN_A14B, *P480, 5).ram_gib < 32 * 1e9 / 2**30  # two fp8 experts, mapped


def test_the_fp8_dit_is_pinned_where_ram_allows_else_mapped(fake_hardware):
    """Pinned ran 1.10x faster than mapped (14B 480p, H100); pinning 14B needs ~16.5 GiB + 4 GiB spare."""
    assert maps_fp8_dit(WAN_14B, "cuda", 14.9) and maps_fp8_dit(WAN_14B, "cuda", 20.0)
    assert not maps_fp8_dit(WAN_14B, "cuda", 21.0)
    assert maps_fp8_dit(WAN_A14B, "cuda", 32.0) and not maps_fp8_dit(WAN_A14B, "cuda", 40.0)
    assert maps_fp8_dit(WAN_14B, "cpu", 512.0)  # the CPU maps to lower its loading peak
    roomy = plan_memory(WAN_14B, *P480, fake_hardware(6.0, 64.0))
    tight = plan_memory(WAN_14B, *P480, fake_hardware(6.0, 14.9))
    assert roomy.level == tight.level == 5 and roomy.fits and tight.fits
    assert roomy.ram_gb == pytest.approx(16.54, abs=0.01)
    assert roomy.mapped_gb == pytest.approx(10.58, abs=0.01)  # the text encoder only
    assert tight.ram_gb < 3.0 and tight.mapped_gb == pytest.approx(24.11, abs=0.01)


def test_mapped_fp8_dit_leaves_ram_for_16_gb_machines():
    """The goal: Wan2.1 14B 480p 81 frames with <= 16 GB (14.9 GiB) of host RAM. With the fp8 DiT mapped
    from its cache file, RAM keeps the process, the VAE, group offload's pinned copies (power-of-two
    buffers of one block, 0.50 GiB as measured on an H100), the layers outside the blocks (diffusers'
    offload copies them back to RAM: 0.48 GiB measured) and, on first load, one converted tensor."""
    mapped = estimate_memory(WAN_14B, *P480, 5)
    in_ram = estimate_memory(WAN_14B, *P480, 5, map_fp8=False)
    encoder = 5.6809e9 * 2 / 2**30
    assert mapped.ram_gib <= 16e9 / 2**30 and in_ram.ram_gib > 16e9 / 2**30
    assert mapped.mapped_gib == pytest.approx(encoder + in_ram.dit_host_weights_gib)
    pinned = (8 * 32 + 2 * 128) / 1024  # 32 and 128 MiB buffers
    nonblock = 0.23518e9 * 2 / 2**30  # the layers outside the blocks, copied back by the offload
    assert mapped.host_weights_gib == pytest.approx(pinned + nonblock)  # measured 0.50 + 0.48 GiB
    assert mapped.ram_gib == pytest.approx(max(mapped.load_ram_gib, 2.0 + pinned + nonblock))
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
    (WAN_14B, P480, 7.0, 64.0, 4, True),  # measured: level 4 peaks 5.31 GiB, ran under a 6 GiB cap
    (WAN_14B, P480, 6.0, 64.0, 5, True),  # level 5 ran under 6 GiB at 1.18x level 0
    (WAN_14B, P480, 5.0, 64.0, 6, True),  # level 6 peaked 3.36 GiB
    (WAN_14B, P480, 4.0, 64.0, 6, False),
    (WAN_14B, P480, 6.0, 14.9, 5, True),  # 16 GB: the fp8 DiT is mapped from disk, ~3.9 GiB private
    (WAN_14B, P480, 7.0, 2.0, 4, False),
    (WAN_14B, P720, 12.0, 64.0, 4, True),  # level 4 peaked 9.85 GiB, ran under a 10 GiB cap
    (WAN_14B, P720, 10.0, 64.0, 6, True),  # level 6 peaked 5.04 GiB, 1.14x level 0
    (WAN_A14B, P480, 7.0, 32.0, 5, True),  # two fp8 experts, mapped from disk
    (WAN_1_3B, P480, 24.0, 32.0, 0, True),
    (WAN_1_3B, P480, 8.0, 32.0, 2, True),
    (WAN_1_3B, P480, 3.0, 32.0, 4, True),  # level 4 peaked 1.77 GiB, ran under a 3 GiB cap
    (WAN_1_3B, P720, 3.0, 32.0, 6, True),  # level 6 peaked 1.54 GiB
]


@pytest.mark.parametrize(("card", "size", "vram", "ram", "level", "fits"), PROFILES)
def test_planner_picks_lowest_level_that_fits(card, size, vram, ram, level, fits, fake_hardware):
    plan = plan_memory(card, *size, fake_hardware(vram, ram))
    assert (plan.level, plan.fits, plan.device, plan.chosen_by) == (level, fits, "cuda:0", "auto")
    assert f"Level {level}" in plan.reason
    if not fits:
        assert "RAM" in plan.reason or "may run out" in plan.reason


def test_reason_names_ram_when_ram_decides_the_level(fake_hardware):
    """80 GB free fits 14B at level 0, but levels 0-3 load the bf16 model (~40 GiB of RAM): RAM decides."""
    plan = plan_memory(WAN_14B, *P480, fake_hardware(80.0, 32.0))
    below = estimate_memory(WAN_14B, *P480, plan.level - 1)
    assert plan.level == 4 and plan.fits
    assert f"Level 3 would fit the GPU but needs about {below.ram_gib:.1f} GB of RAM" in plan.reason
    assert "32.0 GB available" in plan.reason and "GB free." not in plan.reason
    vram_bound = plan_memory(WAN_14B, *P480, fake_hardware(7.0, 64.0))
    assert "Level 3 would need about" in vram_bound.reason and "of RAM (" not in vram_bound.reason


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


def test_without_expandable_segments_the_planner_keeps_the_wider_margin(monkeypatch, fake_hardware):
    """A user's own allocator setting: 9.8 GiB failed under a 12 GiB cap then, so 720p level 4 is refused."""
    assert plan_memory(WAN_14B, *P720, fake_hardware(12.0, 64.0)).level == 4
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    plan = plan_memory(WAN_14B, *P720, fake_hardware(12.0, 64.0))
    assert plan.level == 6 and plan.fits


def test_memory_panel_text_and_choices(fake_hardware):
    from core.facade.inputs import level_choices, t2v_inputs
    from core.facade.text import describe_plan

    assert [value for _, value in level_choices()] == ["auto", *map(str, range(7))]
    assert t2v_inputs([get_card("tiny-wan")], several_gpus=False)["level"]["value"] == "auto"
    text = describe_plan(plan_memory(WAN_14B, *P480, fake_hardware(4.0, 16.0)))
    assert "Memory level 6" in text and "⚠️" in text and "RAM" in text
    assert "mapped from disk: 24.1 GB (more than RAM can cache" in text  # 13.5 fp8 DiT + 10.6 encoder
    roomy = plan_memory(WAN_14B, *P480, fake_hardware(6.0, 64.0))  # the fp8 DiT pinned in RAM
    assert roomy.mapped_gb == pytest.approx(10.58, abs=0.01) and "slower" not in describe_plan(roomy)
    assert "✅" in describe_plan(plan_memory(get_card("tiny-wan"), 64, 48, 9, fake_hardware(None, 8.0)))


def test_a_continuation_plans_for_decoding_all_it_adds(fake_hardware):
    """SkyReels denoises a 97-frame window but decodes the overlap and every added frame at once: 60 s at
    24 fps is 1,440 frames of float32 pixels more than the window, ~8 GiB that a 10 GB GPU lacks."""
    card = get_card("skyreels-v2-df-1.3b-540p")
    size, decoded = (960, 544, 97), 17 + 1440
    window = estimate_memory(card, *size, 6)
    whole = estimate_memory(card, *size, 6, decode_frames=decoded)
    assert whole.decode_gib - window.decode_gib == pytest.approx(3 * (decoded - 97) * 960 * 544 * 4 / 2**30)
    assert whole.vram_gib > window.vram_gib + 7
    hardware = fake_hardware(10.0, 64.0)
    assert plan_memory(card, *size, hardware).fits
    assert not plan_memory(card, *size, hardware, decode_frames=decoded).fits
