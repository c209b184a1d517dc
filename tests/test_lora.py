"""User LoRAs on the tiny Wan: every shared key format loads and changes the video, strength 0 is exactly
no LoRA, alpha is applied as alpha/rank, a LoRA for another model is refused naming it, fp8 storage works,
a hot-swap on a compiled DiT does not recompile, and a Hub LoRA downloads through the fake hub."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from lora_files import FORMATS, tiny_lora, write_lora

from core.cancel import JobCancelledError  # noqa: F401
from core.device_models import DeviceModels
from core.jobs import Job
from core.lora import apply_loras, lora_variant, parse_loras, prepare_loras, resolve_lora
from core.lora.keys import to_diffusers
from core.pipelines import load_diffusers_pipeline
from core.tasks.t2v import T2VRequest, T2VTask, generate_t2v
from core.validation import ConfigError
from weights.registry import get_card


def job() -> Job:
    return Job(None)


@pytest.fixture
def loras_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "loras"
    for fmt in FORMATS:
        write_lora(folder, f"{fmt}.safetensors", tiny_lora(fmt))
    write_lora(folder, "big.safetensors", tiny_lora("comfyui", dim=5120, ffn=13824, layers=2, rank=2))
    return folder


def run_frames(pipe, loras_dir: Path, loras: list[dict] | None, level_pipe=None, **changes) -> np.ndarray:
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=1, steps=2, loras=loras, **changes)
    resolved = tuple(resolve_lora(spec, loras_dir) for spec in request.loras)
    apply_loras(pipe, prepare_loras(resolved, request.card), request.card, hotswap=False)
    return generate_t2v(pipe, request, job())


@pytest.fixture
def pipe(models_dir: Path):
    return load_diffusers_pipeline(get_card("tiny-wan"), models_dir / "tiny-wan", torch.device("cpu"), 0)


def test_each_format_loads_and_changes_the_video(pipe, loras_dir: Path) -> None:
    plain = run_frames(pipe, loras_dir, None)
    for fmt in FORMATS:
        frames = run_frames(pipe, loras_dir, [{"name": fmt, "strength": 1.0}])
        assert np.abs(frames - plain).max() > 1e-3, fmt
    assert np.array_equal(run_frames(pipe, loras_dir, None), plain)  # unloading restores the model


def test_strength_zero_is_bit_exact_no_lora(pipe, loras_dir: Path) -> None:
    plain = run_frames(pipe, loras_dir, None)
    zero = run_frames(
        pipe, loras_dir, [{"name": "comfyui", "strength": 0.0}, {"file": "diffusers", "strength": 0}]
    )
    assert np.array_equal(zero, plain)


def test_alpha_is_applied_as_alpha_over_rank() -> None:
    for fmt, scale in (("diffusers", 8.0 / 4), ("comfyui", 8.0 / 4), ("peft", 1.0)):
        raw = tiny_lora(fmt)
        down = next(
            v
            for k, v in raw.items()
            if "blocks.0" in k
            and ("self_attn.q" in k or "attn1.to_q" in k)
            and ("lora_A" in k or "lora_down" in k)
        )
        up = next(
            v
            for k, v in raw.items()
            if "blocks.0" in k
            and ("self_attn.q" in k or "attn1.to_q" in k)
            and ("lora_B" in k or "lora_up" in k)
        )
        converted = to_diffusers(raw, 0.5)
        a = converted["transformer.blocks.0.attn1.to_q.lora_A.weight"]
        b = converted["transformer.blocks.0.attn1.to_q.lora_B.weight"]
        torch.testing.assert_close(b @ a, 0.5 * scale * (up @ down), msg=fmt)


def test_lora_for_another_model_is_refused_naming_it(pipe, loras_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"Wan2\.1 T2V 14B") as error:
        run_frames(pipe, loras_dir, [{"name": "big"}])
    assert "Tiny Wan" in str(error.value)


def test_missing_lora_and_expert_on_a_one_dit_model(pipe, loras_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not in the loras folder"):
        run_frames(pipe, loras_dir, [{"name": "nope"}])
    with pytest.raises(ConfigError, match="A14B"):
        run_frames(pipe, loras_dir, [{"name": "comfyui", "expert": "high"}])


def test_lora_with_fp8_storage_level(models_dir: Path, loras_dir: Path) -> None:
    card = get_card("tiny-wan")
    fp8 = load_diffusers_pipeline(card, models_dir / "tiny-wan", torch.device("cpu"), 5)
    plain = run_frames(fp8, loras_dir, None)
    frames = run_frames(fp8, loras_dir, [{"name": "lightx2v"}])
    assert np.isfinite(frames).all() and np.abs(frames - plain).max() > 1e-3
    assert all(p.dtype == torch.float32 for n, p in fp8.transformer.named_parameters() if ".lora_" in n)


def test_hotswap_does_not_recompile(models_dir: Path, loras_dir: Path) -> None:
    import torch._dynamo

    card = get_card("tiny-wan")
    pipe = load_diffusers_pipeline(card, models_dir / "tiny-wan", torch.device("cpu"), 0)
    first = prepare_loras((resolve_lora(parse_loras([{"name": "comfyui"}])[0], loras_dir),), card)
    second = prepare_loras(
        (resolve_lora(parse_loras([{"name": "diffusers", "strength": 0.7}])[0], loras_dir),), card
    )
    assert lora_variant(first, True, 0) == lora_variant(second, True, 0)  # same layout: no reload
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=1, steps=2)
    apply_loras(pipe, first, card, hotswap=True)
    pipe.transformer.compile_repeated_blocks(fullgraph=True, backend="eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    a = generate_t2v(pipe, request, job())
    compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert compiled > 0
    apply_loras(pipe, second, card, hotswap=True)
    b = generate_t2v(pipe, request, job())
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled
    assert np.abs(a - b).max() > 1e-4


def cpu_worker(settings, loras_dir: Path) -> SimpleNamespace:
    """What a task needs of a worker: settings (with ``loras_dir``), the CPU and what is loaded there."""
    settings = replace(settings, loras_dir=loras_dir)
    device = torch.device("cpu")
    return SimpleNamespace(settings=settings, device=device, models=DeviceModels(device, settings))


def task_frames(
    worker: SimpleNamespace, frames_of: Callable[[Path], np.ndarray], loras: list | None, **changes
) -> tuple[dict, np.ndarray]:
    """A tiny-wan text-to-video job with ``loras`` on ``worker``: its record and its file's frames as
    ``frames_of`` gives them (the ``encoded_frames`` fixture: exact)."""
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=2, steps=2, loras=loras, **changes)
    record = T2VTask().run(worker, job(), request)
    return record, frames_of(Path(record["path"]))


def test_task_records_loras_and_rerun_restores_them(settings, loras_dir: Path) -> None:
    worker = cpu_worker(settings, loras_dir)
    request = T2VRequest(
        model="tiny-wan", prompt="a cat", seed=3, steps=2, loras=[{"name": "causvid", "strength": 0.5}]
    )
    record = T2VTask().run(worker, job(), request)
    entry = record["loras"][0]
    assert entry["name"] == "causvid" and entry["strength"] == 0.5 and len(entry["sha256"]) == 64
    again = T2VRequest(**{k: v for k, v in record["request"].items() if k != "task"})
    assert again.loras == request.loras


def test_a_job_whose_loras_are_loaded_reads_no_file(
    settings, loras_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline already carrying the request's LoRAs, the file is not read and converted again (a
    14B rank-64 LoRA's conversion took about a second of every job); another strength reads it once."""
    import core.lora.apply

    reads: list[str] = []
    load = core.lora.apply.load_file
    monkeypatch.setattr(core.lora.apply, "load_file", lambda path: reads.append(path) or load(path))
    worker = cpu_worker(settings, loras_dir)

    def run(strength: float) -> dict:
        loras = [{"name": "lightx2v", "strength": strength}]
        return T2VTask().run(worker, job(), T2VRequest(model="tiny-wan", prompt="a", steps=1, loras=loras))

    run(1.0)
    assert len(reads) == 1
    record = run(1.0)
    assert len(reads) == 1 and record["loras"][0]["strength"] == 1.0
    assert gc.get_freeze_count() > 0  # the job froze what survived it
    prepared = prepare_loras(
        (resolve_lora(parse_loras([{"name": "lightx2v", "strength": 0.5}])[0], loras_dir),),
        get_card("tiny-wan"),
    )
    pipe = worker.models._loaded.model
    apply_loras(pipe, prepared, get_card("tiny-wan"), hotswap=False)
    assert gc.get_freeze_count() == 0  # replaced adapters may be collected again
    assert len(reads) == 2
    run(0.5)
    assert len(reads) == 2


def test_a_fused_lora_is_merged_into_the_weights_and_makes_the_adapters_video(pipe, loras_dir: Path) -> None:
    """``fuse`` merges the LoRA into the DiT's weights (no adapter left to run per step), the same video as
    the adapter within float rounding; an unfused LoRA beside it stays an adapter."""
    adapter = run_frames(pipe, loras_dir, [{"name": "lightx2v"}, {"name": "comfyui", "strength": 0.5}])
    card = get_card("tiny-wan")
    fresh = load_diffusers_pipeline(card, pipe.config._name_or_path, torch.device("cpu"), 0)
    fused = run_frames(
        fresh, loras_dir, [{"name": "lightx2v", "fuse": True}, {"name": "comfyui", "strength": 0.5}]
    )
    np.testing.assert_allclose(fused, adapter, atol=2e-5)
    lora_modules = {n.split(".lora_")[0] for n, _ in fresh.transformer.named_parameters() if ".lora_" in n}
    assert lora_modules and all("lightx2v" not in n for n in lora_modules)
    assert list(fresh.transformer.peft_config) == ["lora0"]  # only the unfused one is an adapter
    with pytest.raises(RuntimeError, match="load it anew"):
        run_frames(fresh, loras_dir, [{"name": "causvid", "fuse": True}])


def test_fused_loras_key_the_loaded_pipeline(models_dir: Path, loras_dir: Path) -> None:
    card = get_card("tiny-wan")

    def prepared(*entries: dict) -> tuple:
        specs = parse_loras(list(entries))
        return prepare_loras(tuple(resolve_lora(spec, loras_dir) for spec in specs), card)

    fused = prepared({"name": "lightx2v", "fuse": True})
    assert lora_variant(fused, False, 0) == lora_variant(
        prepared({"name": "lightx2v", "fuse": True}, {"name": "comfyui"}), False, 0
    )  # unfused adapters swap in place
    assert lora_variant(fused, False, 0) != lora_variant(
        prepared({"name": "lightx2v", "fuse": True, "strength": 0.5}), False, 0
    )
    assert lora_variant(fused, False, 0) != lora_variant(prepared({"name": "lightx2v"}), False, 0)
    assert lora_variant(fused, False, 4) == lora_variant((), False, 4)  # offloaded: nothing merges
    fp8 = load_diffusers_pipeline(card, models_dir / "tiny-wan", torch.device("cpu"), 5)
    record = apply_loras(fp8, fused, card, hotswap=False)
    assert record[0]["fused"] is False and list(fp8.transformer.peft_config) == ["lora0"]  # fp8: adapter


def test_a_job_after_a_fused_lora_job_runs_the_plain_model(settings, loras_dir: Path, encoded_frames) -> None:
    worker = cpu_worker(settings, loras_dir)
    run = partial(task_frames, worker, encoded_frames)

    def weights() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in worker.models._loaded.model.transformer.state_dict().items()}

    plain = run(None)[1]
    plain_weights = weights()
    record, fused = run([{"name": "lightx2v", "fuse": True}])
    assert record["loras"][0]["fused"] is True and np.abs(fused.astype(int) - plain).max() > 2
    assert record["request"]["loras"][0]["fuse"] is True  # a rerun fuses it again
    again = run(None)[1]  # the merged weights went with their pipeline:
    assert all(torch.equal(value, plain_weights[key]) for key, value in weights().items())
    off = np.abs(again.astype(int) - plain)
    assert off.max() <= 1, (off.max(), (off > 0).mean())  # once off in a full run; exact: the weights


def test_offloaded_fused_loras_are_adapters_and_keep_the_loaded_pipeline(
    settings, loras_dir: Path, encoded_frames
) -> None:
    worker = cpu_worker(settings, loras_dir)
    run = partial(task_frames, worker, encoded_frames, memory_level="4")

    plain = run(None)[1]
    loaded = worker.models._loaded.model
    record, with_lora = run([{"name": "lightx2v", "fuse": True}])
    assert record["memory_level"] == 4 and record["loras"][0]["fused"] is False
    assert np.abs(with_lora.astype(int) - plain).max() > 0
    assert np.array_equal(run(None)[1], plain)  # the adapter went; the fast mode toggled without a reload
    assert worker.models._loaded.model is loaded


def test_a_failed_merge_spoils_the_pipeline_and_the_next_job_reloads_it(
    settings, loras_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.device_models import SPOILED_MARK

    worker = cpu_worker(settings, loras_dir)
    fused = [{"name": "lightx2v", "fuse": True}]
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=2, steps=1, loras=fused)
    T2VTask().run(worker, job(), request)
    first = worker.models._loaded.model

    def broken(self, *args, **kwargs):
        raise RuntimeError("merge failed half way")

    monkeypatch.setattr(type(first), "fuse_lora", broken)
    other = T2VRequest(
        model="tiny-wan", prompt="a cat", seed=2, steps=1, loras=[fused[0] | {"strength": 0.5}]
    )
    with pytest.raises(RuntimeError, match="half way"):
        T2VTask().run(worker, job(), other)
    spoiled = worker.models._loaded.model
    assert getattr(spoiled, SPOILED_MARK, False)
    monkeypatch.undo()
    record = T2VTask().run(worker, job(), other)
    assert worker.models._loaded.model is not spoiled and record["loras"][0]["fused"] is True
