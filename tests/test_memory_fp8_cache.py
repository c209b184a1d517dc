"""The fp8 cache file at level 5: the same weights and outputs as the in-RAM fp8 load, mapped (not private
RSS), written once and reused, rebuilt when damaged or stale, removed with its model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.hooks import HookRegistry
from safetensors import safe_open

from core.memory.apply import place_transformer
from core.memory.low_ram_load import load_model_low_ram
from core.model_store import ensure_model
from core.settings import Settings
from weights.registry import get_card
from weights.store import delete_model, fp8_cache_dir

pytest_plugins = ["tests.conftest_memory"]

ROOT = Path(__file__).resolve().parents[1]
FP8 = torch.float8_e4m3fn


def tensors_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def forward(model: torch.nn.Module, dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 16, 2, 8, 8, generator=generator, dtype=dtype).to(device)
    text = torch.randn(1, 16, model.config.text_dim, generator=generator, dtype=dtype).to(device)
    with torch.no_grad():
        return model(latent, torch.tensor([500], device=device), text, return_dict=False)[0].cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mapped_fp8_equals_the_in_ram_fp8_load(medium_wan_folder, tmp_path, dtype):
    """A bf16 checkpoint (as the Hub ships Wan) computed in float32 (CPU) or bf16 (GPU): every tensor of
    the cache file is a view of the mapped file, byte-equal to the in-RAM load, and the outputs equal."""
    in_ram, _ = load_model_low_ram(WanTransformer3DModel, medium_wan_folder, dtype, 5)
    mapped, report = load_model_low_ram(
        WanTransformer3DModel, medium_wan_folder, dtype, 5, fp8_cache=tmp_path
    )
    assert report.cache_file == cache_files(tmp_path)[0] and report.mapped == report.tensors
    expected = tensors_of(in_ram)
    for name, tensor in tensors_of(mapped).items():
        assert tensor.dtype == expected[name].dtype, name
        assert torch.equal(tensor.view(torch.uint8), expected[name].view(torch.uint8)), name
    assert mapped.blocks[0].ffn.net[0].proj.weight.dtype == FP8
    assert torch.equal(forward(mapped, dtype), forward(in_ram, dtype))


def test_float32_checkpoint_rounds_through_the_compute_dtype(tiny_wan_folder, tmp_path):
    """diffusers rounds a float32 checkpoint to bf16 on load, then layerwise casting rounds bf16 to fp8:
    both low-RAM paths give those bytes, not float32 rounded to fp8 once (double rounding differs)."""
    folder = tiny_wan_folder / "transformer"
    reference = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    reference.enable_layerwise_casting(storage_dtype=FP8, compute_dtype=torch.bfloat16)
    expected = tensors_of(reference)
    in_ram, _ = load_model_low_ram(WanTransformer3DModel, folder, torch.bfloat16, 5)
    mapped, _ = load_model_low_ram(WanTransformer3DModel, folder, torch.bfloat16, 5, fp8_cache=tmp_path)
    for model in (in_ram, mapped):
        for name, tensor in tensors_of(model).items():
            assert torch.equal(tensor.view(torch.uint8), expected[name].view(torch.uint8)), name


def test_cache_file_is_plain_safetensors(tiny_wan_folder, tmp_path):
    model, report = load_model_low_ram(
        WanTransformer3DModel, tiny_wan_folder / "transformer", torch.float32, 5, fp8_cache=tmp_path
    )
    weights = dict(model.named_parameters())
    with safe_open(str(report.cache_file), framework="pt") as handle:
        keys = [key for key in handle.keys() if not key.startswith("__padding__")]  # noqa: SIM118
        assert set(keys) == set(weights)
        for key in keys:
            assert torch.equal(handle.get_tensor(key).view(torch.uint8), weights[key].view(torch.uint8))
    assert all(t.data_ptr() % 64 == 0 for t in weights.values() if t.dtype == FP8)


def test_cache_is_reused_then_rebuilt_when_damaged_or_stale(tiny_wan_folder, tmp_path):
    source = tiny_wan_folder / "transformer"

    def load():
        return load_model_low_ram(WanTransformer3DModel, source, torch.float32, 5, fp8_cache=tmp_path)

    first, report = load()
    path, stat = report.cache_file, report.cache_file.stat()
    reference = forward(first, torch.float32)
    again, second = load()
    assert second.cache_file == path and (path.stat().st_mtime_ns, path.stat().st_ino) == (
        stat.st_mtime_ns,
        stat.st_ino,
    )
    assert torch.equal(forward(again, torch.float32), reference)
    with path.open("r+b") as file:  # a partial file: cut short
        file.truncate(stat.st_size - 100)
    rebuilt, _ = load()
    assert path.stat().st_size == stat.st_size and torch.equal(forward(rebuilt, torch.float32), reference)
    with path.open("r+b") as file:  # a damaged header
        file.seek(10)
        file.write(b"#")
    rebuilt, _ = load()
    assert torch.equal(forward(rebuilt, torch.float32), reference)
    assert path.read_bytes()[10:11] != b"#"
    shard = next(source.glob("*.safetensors"))
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))  # the source changed
    _, newer = load()
    assert newer.cache_file != path and cache_files(tmp_path) == [newer.cache_file]  # the stale one is gone
    assert not list(tmp_path.glob("*.partial-*"))


def test_without_room_for_the_cache_the_weights_stay_in_ram(tiny_wan_folder, tmp_path, monkeypatch):
    free = type("Usage", (), {"free": 0})()
    monkeypatch.setattr("core.memory.fp8_cache.shutil.disk_usage", lambda path: free)
    model, report = load_model_low_ram(
        WanTransformer3DModel, tiny_wan_folder / "transformer", torch.float32, 5, fp8_cache=tmp_path
    )
    assert report.cache_file is None and cache_files(tmp_path) == []
    assert model.blocks[0].ffn.net[0].proj.weight.dtype == FP8


def test_mapped_weights_are_pinned_per_group_when_offloaded(tiny_wan_folder, tmp_path):
    """Group offload gets ``low_cpu_mem_usage`` for mapped weights: pinning them up front would copy the
    whole DiT into locked RAM; in-RAM (arena-pinned) weights keep diffusers' default."""
    folder = tiny_wan_folder / "transformer"
    mapped, _ = load_model_low_ram(WanTransformer3DModel, folder, torch.float32, 5, fp8_cache=tmp_path)
    in_ram, _ = load_model_low_ram(WanTransformer3DModel, folder, torch.float32, 5)
    flags = []
    for model in (mapped, in_ram):
        place_transformer(model, 5, torch.device("cpu"))
        hook = HookRegistry.check_if_exists_or_initialize(model.blocks[0]).get_hook("group_offloading")
        flags.append(hook.config.low_cpu_mem_usage)
    assert flags == [True, False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="group offload with streams needs CUDA")
def test_mapped_weights_stay_mapped_through_offloaded_forwards(medium_wan_folder, tmp_path):
    """On a GPU the offload hook copies each block from the mapped file and puts the mapped tensors back
    afterwards: no pinned host copy appears, and the output equals the pinned in-RAM load. The layers
    outside the blocks (diffusers' unmatched group, offloaded without a stream by ``.to("cpu")``) come
    back as private copies: the estimate counts them (``nonblock_host_gib``)."""
    device = torch.device("cuda")
    folder, dtype = medium_wan_folder, torch.bfloat16
    mapped, _ = load_model_low_ram(WanTransformer3DModel, folder, dtype, 5, fp8_cache=tmp_path)
    pinned, _ = load_model_low_ram(WanTransformer3DModel, folder, dtype, 5, pin=True)
    before = {name: p.data_ptr() for name, p in mapped.named_parameters()}
    for model in (mapped, pinned):
        place_transformer(model, 5, device)
    assert torch.equal(forward(mapped, dtype, "cuda"), forward(pinned, dtype, "cuda"))
    after = {name: p.data_ptr() for name, p in mapped.named_parameters()}
    moved = {name for name in before if after[name] != before[name]}
    assert moved and not any(name.startswith("blocks.") for name in moved)
    assert not any(p.is_pinned() for p in mapped.parameters())


def test_delete_model_removes_its_fp8_cache(tmp_path):
    from core.pipelines import load_diffusers_pipeline

    card, settings = get_card("tiny-wan"), Settings(models_dir=tmp_path)
    folder = ensure_model(card, settings)
    pipe = load_diffusers_pipeline(card, folder, torch.device("cpu"), level=5)
    cache = fp8_cache_dir(tmp_path, card.id)
    assert pipe.transformer._weights_mapped_from.parent == cache
    assert [p.name.split("-")[0] for p in cache_files(cache)] == ["transformer"]
    size = sum(p.stat().st_size for p in cache.iterdir())
    model_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert delete_model(card, settings) == model_bytes + size
    assert not cache.exists() and not folder.exists()


# RssAnon: private memory (what the machine must have); RssFile: mapped file pages (page cache the
# kernel can drop). VmHWM: the peak of both together.
MEASURE = """
import json, sys
from pathlib import Path
import torch
from diffusers import WanTransformer3DModel
from core.memory.low_ram_load import load_model_low_ram
def status(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024
load_model_low_ram(WanTransformer3DModel, sys.argv[2], torch.float32, 5, fp8_cache=Path(sys.argv[4]))
keys = ("RssAnon", "RssFile", "VmHWM")
rows = []
for _ in range(2):
    before = {key: status(key) for key in keys}
    model, report = load_model_low_ram(WanTransformer3DModel, sys.argv[1], torch.float32, 5,
                                       fp8_cache=Path(sys.argv[3]))
    loaded = {key: status(key) - before[key] for key in keys}
    with torch.no_grad():
        total = sum(float(t.view(torch.uint8)[::64].sum()) for t in model.parameters())
    touched = {key: status(key) - before[key] for key in keys}
    rows.append({"loaded": loaded, "touched": touched, "mapped": report.mapped, "tensors": report.tensors})
    del model
print(json.dumps(rows))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon/VmHWM from Linux's /proc")
def test_mapped_fp8_dit_is_page_cache_not_private_memory(
    medium_wan_folder, tiny_wan_folder, tmp_path, child_env
):
    """Level 5 of a ~200M model in a fresh process (a tiny load first does the imports). The first load
    writes the cache file: the peak RSS (VmHWM) rises by a small part of the fp8 weights (the staging
    buffer and the converted-piece buffer: whole tensors here, as the model is small), and private
    memory (RssAnon) by almost nothing once they are freed. Reading every weight then brings the
    file in as file pages, not private memory. The second load only maps the file: nearly nothing."""
    args = [str(medium_wan_folder), str(tiny_wan_folder / "transformer"), str(tmp_path / "medium")]
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *args, str(tmp_path / "tiny")],
        capture_output=True, text=True, env=child_env, check=True, timeout=120,
    )  # fmt: skip
    first, second = json.loads(out.stdout.strip().splitlines()[-1])
    cache = cache_files(tmp_path / "medium")[0].stat().st_size
    assert cache > 200e6 and first["mapped"] == first["tensors"] == second["mapped"]
    assert first["loaded"]["RssAnon"] < 0.05 * cache and first["loaded"]["VmHWM"] < 0.4 * cache
    for row in (first, second):
        assert row["touched"]["RssFile"] > 0.5 * cache  # every page read (some may be dropped again)
        assert row["touched"]["RssAnon"] < 0.05 * cache
    assert second["loaded"]["RssAnon"] < 0.05 * cache and second["loaded"]["RssFile"] < 0.05 * cache


def test_a_pinned_choice_writes_no_cache_and_maps_nothing(tmp_path, monkeypatch):
    """Where RAM allows pinning (``maps_fp8_dit`` False) level 5 loads the fp8 DiT into RAM, no cache file."""
    import core.pipelines
    from core.pipelines import load_diffusers_pipeline

    asked = []
    monkeypatch.setattr(core.pipelines, "maps_fp8_dit", lambda card, kind, ram: asked.append(kind) or False)
    card, settings = get_card("tiny-wan"), Settings(models_dir=tmp_path)
    pipe = load_diffusers_pipeline(card, ensure_model(card, settings), torch.device("cpu"), level=5)
    assert asked == ["cpu"] and getattr(pipe.transformer, "_weights_mapped_from", None) is None
    assert not fp8_cache_dir(tmp_path, card.id).exists()


def test_stale_files_go_but_partial_files_other_writers_still_write_stay(tmp_path):
    """Split ranks write the same cache at once: one's clean-up must not delete another's partial file."""
    from core.memory.fp8_cache import PARTIAL_GRACE_S, _remove_stale

    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = tmp_path / "dit-new.safetensors"
        files = {
            "stale": "dit-old.safetensors",
            "writing": f"dit-new.safetensors.partial-{writer.pid}",
            "recent": f"dit-new.safetensors.partial-{ended.pid}",  # e.g. a writer on another machine
            "abandoned": f"dit-old.safetensors.partial-{ended.pid}",
            "other component": "vae-old.safetensors",
        }
        for name in [keep.name, *files.values()]:
            (tmp_path / name).touch()
        long_ago = time.time() - PARTIAL_GRACE_S - 60
        for what in ("stale", "writing", "abandoned"):
            os.utime(tmp_path / files[what], (long_ago, long_ago))
        _remove_stale(tmp_path, "dit", keep)
    finally:
        writer.kill()
        writer.wait()
    left = {files[what] for what in ("writing", "recent", "other component")}
    assert {path.name for path in tmp_path.iterdir()} == {keep.name, *left}
