"""The task registry: every task found by name and model, run by the runner through a look-up, and a new
task plugging in by registration alone; the device's one owner of loaded models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from core.device_models import DeviceModels
from core.jobs import Job
from core.magi.request import MagiRequest
from core.memory.oom import step_up
from core.memory.planner import plan_level_for_gpus, plan_upscale, text_encoder_device
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request, registry, request_types, task_for, task_named, task_names
from core.tasks.chain import ChainTask
from core.tasks.continuation import ContinueTask
from core.tasks.magi import MagiContinue, MagiTextToVideo
from core.tasks.t2v import T2VRequest, T2VTask
from core.tasks.upscale import UpscaleTask
from core.validation import ConfigError
from weights.registry import get_card

pytest_plugins = ["tests.conftest_upscale"]
CPU = torch.device("cpu")


def test_every_task_is_found_by_its_name_and_the_model() -> None:
    assert task_names() == ["chain", "continue", "t2v", "i2v", "upscale"]
    assert type(task_named("t2v", "tiny-wan")) is T2VTask
    assert type(task_named("t2v", "tiny-magi")) is MagiTextToVideo
    assert type(task_named("continue", "tiny-skyreels-df")) is ContinueTask
    assert type(task_named("continue", "tiny-magi")) is MagiContinue
    assert type(task_named("upscale", "tiny-esrgan")) is UpscaleTask
    assert type(task_named("chain")) is ChainTask
    assert set(request_types()) == {"chain", "continue", "t2v", "i2v", "upscale"}
    known = "known tasks: chain, continue, t2v, i2v, upscale"
    with pytest.raises(ConfigError, match=f"unknown task 'paint'; {known}"):
        parse_request({"task": "paint", "model": "tiny-wan"})


def test_a_parsed_request_leads_back_to_its_task() -> None:
    wan = parse_request({"model": "tiny-wan", "prompt": "a cat"})
    magi = parse_request({"model": "tiny-magi", "prompt": "a cat"})
    assert isinstance(wan, T2VRequest) and type(task_for(wan)) is T2VTask
    assert isinstance(magi, MagiRequest) and magi.task == "t2v" and task_for(magi).name in ("t2v", "continue")
    assert task_for(wan).splittable and not task_for(magi).splittable
    with pytest.raises(TypeError, match="no task runs dict"):
        task_for({"task": "t2v"})


@dataclass(frozen=True)
class EchoRequest:
    """A request of a task added by a test: a file with ``text`` in it."""

    text: str
    seed: int = 0
    task = "echo"

    def with_seed(self) -> EchoRequest:
        return replace(self, seed=self.seed or 7)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **asdict(self)}


@pytest.fixture
def echo_task() -> Iterator[type[registry.Task]]:
    """A task registered for one test, then removed again."""
    tasks, by_type = dict(registry._TASKS), dict(registry._BY_TYPE)

    class EchoTask(registry.Task):
        name = "echo"
        request_type = EchoRequest

        def run(self, worker: Any, job: Job, request: EchoRequest) -> dict[str, Any]:
            path = Path(worker.settings.outputs_dir) / "echo.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(request.text)
            return {"task": self.name, "path": str(path), "device": str(worker.device)}

    registry.register(EchoTask)
    try:
        yield EchoTask
    finally:
        registry._TASKS.clear()
        registry._TASKS.update(tasks)
        registry._BY_TYPE.clear()
        registry._BY_TYPE.update(by_type)


def test_a_new_task_plugs_in_by_registering_and_the_runner_looks_it_up(echo_task, tmp_path: Path) -> None:
    request = parse_request({"task": "echo", "text": "hello"})
    assert isinstance(request, EchoRequest) and "echo" in task_names()
    runner = Runner(Settings(outputs_dir=tmp_path / "out", models_dir=tmp_path / "models"), CPU)
    record = runner.execute(Job(request))
    assert record["device"] == "cpu" and Path(record["path"]).read_text() == "hello"
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(echo_task)


def test_a_task_refuses_what_the_studio_cannot_run(tmp_path: Path, clip_64: Path) -> None:
    request = parse_request({"task": "upscale", "model": "tiny-flashvsr", "video": str(clip_64), "scale": 2})
    task_for(request).check_devices(request, [CPU])
    split = replace(request, pipeline_gpus=2)
    assert task_for(split).workers_needed(split) == 2
    with pytest.raises(ConfigError, match="needs 2 GPUs"):
        task_for(split).check_devices(split, [CPU])


def test_one_owner_holds_one_model_per_device_whatever_its_family(tmp_path: Path) -> None:
    loads: list[tuple[str, int, str]] = []
    models = DeviceModels(CPU, Settings(models_dir=tmp_path))

    def loader(tag: str):
        return lambda card, folder, device, level: loads.append((card.id, level, tag)) or object()

    wan = models.get(get_card("tiny-wan"), tmp_path, 0, loader=loader("pipeline"))
    assert models.get(get_card("tiny-wan"), tmp_path, 0) is wan
    models.get(get_card("tiny-flashvsr"), tmp_path, variant="tiny-long", loader=loader("upscaler"))
    assert models.loaded_id == "tiny-flashvsr"
    models.get(get_card("tiny-wan"), tmp_path, 2, loader=loader("pipeline"))
    assert loads == [
        ("tiny-wan", 0, "pipeline"),
        ("tiny-flashvsr", 0, "upscaler"),
        ("tiny-wan", 2, "pipeline"),
    ]
    assert models.loaded_level == 2
    models.unload()
    assert models.loaded_id is None


def test_the_planner_holds_the_families_memory_rules() -> None:
    flashvsr = get_card("flashvsr-v1.1")
    assert plan_upscale(flashvsr, 1408, 768, CPU).fits
    gpu = torch.device("cuda", 0)
    assert not plan_upscale(flashvsr, 1408, 768, gpu, free_gb=70, total_gb=80).kv_offload
    assert plan_upscale(flashvsr, 1408, 768, gpu, free_gb=20, total_gb=24).kv_offload  # the 24 GB rule
    uhd = plan_upscale(flashvsr, 3840, 2160, gpu, free_gb=70, total_gb=80)
    assert uhd.fits and uhd.kv_offload and "in RAM to fit" in uhd.reason  # 4K: only with the KV cache in RAM
    refused = plan_upscale(flashvsr, 3840, 2160, gpu, free_gb=22, total_gb=24)
    assert not refused.fits and "needs about 46.1 GB" in refused.reason and "choose x2" in refused.reason
    assert plan_upscale(get_card("realesrgan-x4plus"), 3840, 2160, gpu, free_gb=1, total_gb=8).fits
    assert text_encoder_device(get_card("tiny-magi"), CPU) == CPU
    size = (64, 48, 9)
    assert plan_level_for_gpus(get_card("tiny-wan"), size, None) == 0
    assert plan_level_for_gpus(get_card("tiny-wan"), size, (0, 1), "3") == 3
    assert [step_up(level) for level in (0, 5, 6)] == [1, 6, None]
