"""A model's facts live on its card: validated at load, read by the estimate, the split, the caches and the
tiny builder; a new Wan-family model (tiny-wan-alt) is a card and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from core.caches.config import CacheConfig, calibration_for, parse_cache_config
from core.hardware import GpuInfo, Hardware
from core.jobs import JobStatus
from core.magi.config import preset
from core.memory.estimate import CALIBRATION_PATH, estimate_memory, load_calibration
from core.memory.planner import plan_memory
from core.parallel.geometry import geometry_for, token_count
from core.runner import Runner
from core.settings import Settings
from core.space import estimate_gpu_seconds
from core.tasks import parse_request
from core.upscale.config import DiTConfig
from core.validation import ConfigError
from core.video_io import probe_video, read_record
from tests.test_runner import run_job
from weights.registry import CARDS_DIR, cards_for, get_card, load_cards, parse_card

ALT = "tiny-wan-alt"
ALT_JOB = {"model": ALT, "prompt": "a red car", "frames": 9, "width": 48, "height": 80, "steps": 2, "seed": 3}


def card_data(card_id: str) -> dict:
    return yaml.safe_load((CARDS_DIR / f"{card_id}.yaml").read_text(encoding="utf-8"))


def test_every_generating_card_states_its_arch_and_wan_cards_their_exact_counts() -> None:
    for card in load_cards().values():
        if card.serves("t2v") or card.serves("continue"):
            assert card.arch is not None, card.id
        if card.pipeline in ("WanPipeline", "SkyReelsV2DiffusionForcingVideoToVideoPipeline"):
            assert card.arch.params is not None, card.id
            assert estimate_memory(card, *card_size(card), 0).vram_gib > 0
        for method, table in card.caches.speeds.items():
            for value in table.values():
                CacheConfig(method=method, threshold=value)


def card_size(card) -> tuple[int, int, int]:
    res = card.resolution(card.defaults.resolution)
    return res.width, res.height, card.defaults.frames


def test_arch_facts_give_the_split_geometry_and_the_token_count() -> None:
    ti2v = get_card("wan2.2-ti2v-5b").arch
    assert (ti2v.dim, ti2v.pixels_per_token, ti2v.frames_per_latent) == (3072, 32, 4)
    assert ti2v.tokens(1280, 704, 81) == 21 * 22 * 40
    assert get_card("wan2.2-t2v-a14b").arch.experts == 2


def test_magi_and_flashvsr_cards_match_the_published_configs_their_loaders_use() -> None:
    for card_id, variant in [("magi-1-4.5b-distill", "4.5B_distill"), ("magi-1-24b-distill", "24B_distill")]:
        arch, config = get_card(card_id).arch, preset(variant)
        assert (arch.heads, arch.head_dim, arch.layers, arch.ffn_dim) == (
            config.num_attention_heads, config.kv_channels, config.num_layers, config.ffn_hidden_size
        )  # fmt: skip
    arch, dit = get_card("flashvsr-v1.1").arch, DiTConfig()
    assert (arch.heads, arch.head_dim, arch.layers, arch.ffn_dim) == (
        dit.num_heads, dit.head_dim, dit.num_layers, dit.ffn_dim
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": None}, "needs its arch facts"),
        ({"arch": {"heads": 2, "head_dim": 16, "layers": 1, "ffn_dim": 8, "patch": [1, 2, 2]}}, "vae_stride"),
        ({"arch": {**card_data("tiny-wan")["arch"], "patch": [1, 2]}}, "three whole numbers"),
        ({"arch": {**card_data("tiny-wan")["arch"], "heads": 0}}, "arch.heads"),
        ({"caches": {"speeds": {"teacash": {"fast": 1}}}}, "teacash"),
        ({"caches": {"speeds": {"teacache": {"fastest": 1}}}}, "fastest"),
        ({"caches": {"teacache": {"modulation": "temb", "coefficients": []}}}, "warmup_steps"),
    ],
)
def test_card_facts_are_validated_at_load(change: dict, message: str) -> None:
    data = {**card_data("tiny-wan"), **change}
    with pytest.raises(ConfigError, match=message) as error:
        parse_card(data, where="tiny-wan.yaml")
    assert "tiny-wan" in str(error.value)


def test_cache_presets_and_calibration_come_from_the_card() -> None:
    card = get_card("wan2.1-t2v-14b")
    assert parse_cache_config({"preset": "fast"}, card) == CacheConfig("teacache", 0.2)
    assert parse_cache_config({"method": "mag", "preset": "faster"}, card).threshold == 0.24  # speed.yaml
    assert calibration_for(card).teacache.coefficients[0] == -5784.54975374
    assert calibration_for(get_card("wan2.2-t2v-a14b")).mag_ratios is None
    with pytest.raises(ConfigError, match="magnitude ratios"):
        parse_cache_config({"method": "mag"}, get_card("wan2.2-t2v-a14b"))


def test_memory_calibration_keys_are_card_ids_and_every_point_cites_its_log(tmp_path: Path) -> None:
    cal = load_calibration()
    assert set(cal.shapes) <= set(load_cards())
    assert all(p["log"] for p in cal.measured)
    data = yaml.safe_load(CALIBRATION_PATH.read_text(encoding="utf-8"))
    broken_points = [
        ({"model": "wan9-t2v"}, "unknown model 'wan9-t2v'"),
        ({"log": None}, "cite its log"),
        ({"log": "docs/bench-logs/missing.log"}, "no log file"),
    ]
    for point, message in broken_points:
        broken = {**data, "measured": [{**data["measured"][0], **point}, *data["measured"][1:]]}
        path = tmp_path / f"calibration{len(point)}{len(message)}.yaml"
        path.write_text(yaml.safe_dump(broken), encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_calibration(path)


def test_a_new_wan_model_is_a_card_listed_planned_and_split_from_its_facts() -> None:
    card = get_card(ALT)
    assert ALT in [c.id for c in cards_for("t2v", dev=True)] and ALT not in [c.id for c in cards_for("t2v")]
    assert cards_for("t2v", dev=True)[0].id == "tiny-wan"
    request = parse_request(ALT_JOB)
    geometry = geometry_for(card)
    assert (geometry.heads, geometry.pixels_per_token) == (3, 16)
    assert token_count(request, geometry) == 3 * 5 * 3
    gpu = Hardware((GpuInfo(0, "Fake GPU", 24.0, 24.0, (9, 0)),), 64.0, 64.0)
    plan = plan_memory(card, 48, 80, 9, gpu, 0)
    assert (plan.level, plan.fits, plan.chosen_by) == (0, True, "auto") and 0 < plan.vram_gb < 1
    assert estimate_memory(card, 48, 80, 9, 0).tokens == 45
    assert parse_cache_config({"preset": "faster"}, card).threshold == 2.4
    assert estimate_gpu_seconds(request) == 60


def test_a_new_wan_model_generates_its_video_end_to_end(settings: Settings) -> None:
    job = run_job(Runner(settings, torch.device("cpu")), ALT_JOB)
    assert job.status == JobStatus.DONE, job.error
    path = Path(job.result["path"])
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (9, 48, 80, 12.0)
    assert read_record(path)["model"] == ALT
    config = json.loads((settings.models_dir / ALT / "transformer" / "config.json").read_text())
    arch = get_card(ALT).arch
    assert (config["num_attention_heads"], config["attention_head_dim"], config["num_layers"]) == (3, 16, 1)
    assert config["ffn_dim"] == arch.ffn_dim and tuple(config["patch_size"]) == arch.patch


def test_every_real_card_states_its_download_size() -> None:
    """The Models tab, the first-run notice and the README quote it: no real model without one."""
    missing = [card.id for card in load_cards().values() if not card.dev and card.download_gb <= 0]
    assert missing == []
