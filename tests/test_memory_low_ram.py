"""The low-RAM loader: the same weights and videos as diffusers' loader, fp8 as layerwise casting
stores it, a mapped text encoder, clear errors, and peak RSS of a ~200M model against the estimate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from accelerate import init_empty_weights
from diffusers import WanPipeline, WanTransformer3DModel
from safetensors.torch import load_file, save_file

from core.memory.apply import apply_memory_level, has_layerwise_casting
from core.memory.estimate import ModelShape, estimate_for_shape, load_calibration
from core.memory.low_ram_load import (
    PinnedArena,
    load_components_low_ram,
    load_model_low_ram,
    plan_dtypes,
    stored_dtype,
)
from core.pipelines import load_diffusers_pipeline

pytest_plugins = ["tests.conftest_memory"]

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


def tensors_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_weights_and_dtypes_as_from_pretrained(tiny_wan_folder, dtype, monkeypatch):
    """float32 stays mapped from the file; bfloat16 converts through a staging buffer made so small
    (256 bytes) that most tensors pass through it in several slices."""
    monkeypatch.setattr("core.memory.low_ram_load.STAGING_BYTES", 256)
    folder = tiny_wan_folder / "transformer"
    reference = tensors_of(WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype))
    model, report = load_model_low_ram(WanTransformer3DModel, folder, dtype, level=4)
    loaded = tensors_of(model)
    assert loaded.keys() == reference.keys() and report.tensors == len(dict(model.named_parameters()))
    for name, tensor in reference.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name
    assert report.mapped == (report.tensors if dtype == torch.float32 else 11)  # the float32 modules


def test_fp8_level_stores_what_layerwise_casting_stores(tiny_wan_folder, tmp_path):
    """From a bf16 checkpoint (as the Hub ships Wan) both paths round bf16 to fp8 once: the same bytes."""
    folder = tmp_path / "bf16"
    WanTransformer3DModel.from_pretrained(
        tiny_wan_folder / "transformer", torch_dtype=torch.bfloat16
    ).save_pretrained(folder)
    reference = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    reference.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    model, report = load_model_low_ram(WanTransformer3DModel, folder, torch.bfloat16, level=5)
    assert has_layerwise_casting(model)
    expected = tensors_of(reference)
    for name, tensor in tensors_of(model).items():
        assert tensor.dtype == expected[name].dtype, name
        assert torch.equal(tensor.view(torch.uint8), expected[name].view(torch.uint8)), name
    fp8 = sum(p.numel() for p in model.parameters() if p.dtype == torch.float8_e4m3fn)
    assert fp8 > 0 and report.host_bytes < sum(p.numel() * 2 for p in model.parameters())


def test_low_ram_pipeline_makes_the_same_video(tiny_card, tiny_wan_folder, render):
    """Level 5 through the pipeline loader (DiT streamed in fp8, text encoder mapped) vs diffusers'
    ``from_pretrained`` then the same level: the same frames."""
    plain = WanPipeline.from_pretrained(tiny_wan_folder, dtype=torch.float32)
    plain.set_progress_bar_config(disable=True)
    apply_memory_level(plain, 5, CPU)
    low = load_diffusers_pipeline(tiny_card, tiny_wan_folder, CPU, level=5)
    assert low.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
    assert np.array_equal(render(low), render(plain))


def test_text_encoder_stays_mapped_and_encodes_the_same(tiny_wan_folder):
    folder = tiny_wan_folder / "text_encoder"
    reference = transformers.UMT5EncoderModel.from_pretrained(folder).eval()
    model, report = load_model_low_ram(transformers.UMT5EncoderModel, folder, stored_dtype(folder), level=0)
    assert report.mapped == report.tensors and model.shared.weight is model.encoder.embed_tokens.weight
    ids = torch.tensor([[3, 4, 5, 6, 1, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state, reference(ids).last_hidden_state)
    components = load_components_low_ram(tiny_wan_folder, 4, torch.float32, CPU)
    assert set(components) == {"transformer", "text_encoder"}
    assert load_components_low_ram(tiny_wan_folder, 3, torch.float32, CPU) == {}


def test_checkpoint_mismatches_are_clear_errors(tiny_wan_folder, tmp_path):
    source = tiny_wan_folder / "transformer"
    weights = load_file(source / "diffusion_pytorch_model.safetensors")
    (tmp_path / "config.json").write_text((source / "config.json").read_text())
    save_file({**weights, "blocks.0.extra": torch.zeros(2)}, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(KeyError, match=r"blocks\.0\.extra"):
        load_model_low_ram(WanTransformer3DModel, tmp_path, torch.float32, 4)
    weights.pop("proj_out.weight")
    save_file(weights, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match=r"proj_out\.weight"):
        load_model_low_ram(WanTransformer3DModel, tmp_path, torch.float32, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pinned_arena_packs_tensors_into_power_of_two_chunks():
    arena = PinnedArena(chunk_bytes=2**20)
    parts = [arena.empty(torch.Size([300, 300]), torch.bfloat16) for _ in range(5)]
    assert all(p.is_pinned() for p in parts) and arena.reserved_bytes == 2**20


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the forked (pytest-sized) parent.
MEASURE = """
import json, sys
import torch
from diffusers import WanTransformer3DModel
from core.memory.low_ram_load import load_model_low_ram
def status(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024
load_model_low_ram(WanTransformer3DModel, sys.argv[2], torch.float32, 5)  # imports and lazy set-up
base = status("VmHWM")
model, report = load_model_low_ram(WanTransformer3DModel, sys.argv[1], torch.float32, 5)
print(json.dumps({"base": base, "peak": status("VmHWM"), "host": report.host_bytes}))
"""


def medium_shape(folder: Path) -> ModelShape:
    """The estimator's shape of the medium model, parameters counted on the meta device."""
    config = json.loads((folder / "config.json").read_text())
    with init_empty_weights():
        model = WanTransformer3DModel.from_config(config)
    plan_dtypes(model, torch.bfloat16, 5)
    params = [(p.numel(), p.dtype) for p in model.parameters()]
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    return ModelShape(
        dim=dim,
        ffn_dim=config["ffn_dim"],
        layers=config["num_layers"],
        dit_params=sum(n for n, _ in params) / 1e9,
        wide_params=sum(n for n, d in params if d != torch.float8_e4m3fn) / 1e9,
        text_encoder_params=0.0,
        vae_params=0.0,
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from Linux's /proc")
def test_peak_rss_of_a_medium_model_at_level_5_matches_the_estimate(
    medium_wan_folder, tiny_wan_folder, child_env
):
    """Loading at level 5 on the CPU (fp8 storage, float32 compute) measured in a fresh process (after a
    tiny load has done the imports): the peak RSS rise is the estimator's low-RAM load figure within
    10%, and far below the bf16 checkpoint."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(medium_wan_folder), str(tiny_wan_folder / "transformer")],
        capture_output=True, text=True, env=child_env, check=True, timeout=120,
    )  # fmt: skip
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    rise = (measured["peak"] - measured["base"]) / GIB
    shape = medium_shape(medium_wan_folder)
    estimate = estimate_for_shape(shape, 832, 480, 81, 5, "cpu")
    estimated_rise = estimate.load_ram_gib - load_calibration().process_ram_gib
    bf16 = sum(f.stat().st_size for f in medium_wan_folder.glob("*.safetensors")) / GIB
    shard = max(f.stat().st_size for f in medium_wan_folder.glob("*.safetensors")) / GIB
    assert measured["host"] / GIB == pytest.approx(estimate.dit_host_weights_gib, rel=0.01)
    assert rise == pytest.approx(estimated_rise, rel=0.1)
    assert rise < 0.7 * bf16 and rise < bf16 + shard


def test_skyreels_loads_low_ram_and_chunks_its_feed_forward(tmp_path):
    """The Continue tab's SkyReels-V2 DF DiT goes through the same loader; its blocks (causal masks)
    keep their forward and get only the feed-forward sliced at level 6."""
    from diffusers.hooks import HookRegistry

    from core.memory.chunking import FFN_HOOK_NAME, HOOK_NAME
    from core.tiny.skyreels import build_tiny_skyreels_df
    from weights.registry import get_card

    folder = build_tiny_skyreels_df(tmp_path / "tiny-skyreels-df")
    pipe = load_diffusers_pipeline(get_card("tiny-skyreels-df"), folder, CPU, level=6)
    block = pipe.transformer.blocks[0]
    assert block.ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
    assert HookRegistry.check_if_exists_or_initialize(block.ffn).get_hook(FFN_HOOK_NAME) is not None
    assert HookRegistry.check_if_exists_or_initialize(block).get_hook(HOOK_NAME) is None


MAPPED = """
import json, sys
import torch
from diffusers import WanTransformer3DModel
from core.memory.low_ram_load import load_model_low_ram
def status(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024
load_model_low_ram(WanTransformer3DModel, sys.argv[2], torch.float32, 4)
before = {key: status(key) for key in ("RssAnon", "RssFile")}
model, report = load_model_low_ram(WanTransformer3DModel, sys.argv[1], torch.bfloat16, 4)
loaded = {key: status(key) - before[key] for key in before}
with torch.no_grad():
    total = sum(float(p.sum(dtype=torch.float32)) for p in model.parameters())  # no float copy
touched = {key: status(key) - before[key] for key in before}
print(json.dumps({"loaded": loaded, "touched": touched, "mapped": report.mapped, "tensors": report.tensors}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon/RssFile from Linux's /proc")
def test_weights_in_their_stored_dtype_stay_mapped_from_the_file(
    medium_wan_folder, tiny_wan_folder, child_env
):
    """bf16 weights loaded in bf16 are views of the mapped shards: no private copy (RssAnon barely moves);
    reading them brings the file's pages in as RssFile, page cache the kernel can drop again."""
    out = subprocess.run(
        [sys.executable, "-c", MAPPED, str(medium_wan_folder), str(tiny_wan_folder / "transformer")],
        capture_output=True, text=True, env=child_env, check=True, timeout=120,
    )  # fmt: skip
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    bf16 = sum(f.stat().st_size for f in medium_wan_folder.glob("*.safetensors"))
    assert measured["mapped"] > 0.8 * measured["tensors"]  # all but the float32 norms and time embedder
    assert measured["loaded"]["RssAnon"] < 0.1 * bf16 and measured["loaded"]["RssFile"] < 0.1 * bf16
    # reading brings the pages in (some may already be dropped again when the machine is short of memory)
    assert 0.5 * bf16 < measured["touched"]["RssFile"] < 1.1 * bf16
    assert measured["touched"]["RssAnon"] < 0.25 * bf16  # a private copy would be ~1.0x; allocator slack
