"""The text encoder stays on the GPU where the plan has room for it: the planner decides (from level 2,
Auto only) and ``DeviceModels`` puts it there once; a second job on the same model moves nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.device_models import DeviceModels
from core.memory.estimate import load_calibration
from core.memory.planner import MemoryPlan, encoders_gib, plan_memory
from core.settings import Settings
from weights.registry import get_card

pytest_plugins = ["tests.conftest_memory"]
SIZE = (832, 480, 81)


@pytest.fixture
def card():
    return get_card("wan2.1-t2v-14b")


def test_level_0_has_the_encoder_on_the_gpu(card, fake_hardware) -> None:
    plan = plan_memory(card, *SIZE, fake_hardware(80.0, 128.0))
    assert plan.level == 0 and plan.text_encoder_gpu


def test_an_offloaded_level_keeps_the_encoder_where_there_is_room(card, fake_hardware) -> None:
    roomy = plan_memory(card, *SIZE, fake_hardware(30.0, 128.0))
    tight = plan_memory(card, *SIZE, fake_hardware(16.0, 128.0))
    assert (roomy.level, tight.level) == (4, 4)
    assert roomy.text_encoder_gpu and "stays on the GPU" in roomy.reason
    assert not tight.text_encoder_gpu and "stays on the GPU" not in tight.reason
    encoders = encoders_gib(card, load_calibration())
    assert 10 < encoders < 12  # UMT5-XXL's encoder in bfloat16
    assert roomy.vram_gb == pytest.approx(tight.vram_gb + encoders)  # the plan's peak counts it


def test_a_level_the_user_chose_keeps_its_rule(card, fake_hardware) -> None:
    plan = plan_memory(card, *SIZE, fake_hardware(30.0, 128.0), override="4")
    assert plan.level == 4 and not plan.text_encoder_gpu


class FakeEncoder(torch.nn.Module):
    """Says where it is and counts the moves asked of it (without moving: there is no GPU here)."""

    def __init__(self) -> None:
        super().__init__()
        self.device = torch.device("cpu")
        self.moves: list[str] = []

    def to(self, device: torch.device) -> FakeEncoder:  # type: ignore[override]
        self.moves.append(str(device))
        self.device = torch.device(device)
        return self


def test_a_second_job_neither_reloads_nor_moves_the_text_encoder(card, tmp_path: Path, monkeypatch) -> None:
    loads: list[int] = []

    def loader(card, folder, device, level):
        loads.append(level)
        return SimpleNamespace(text_encoder=FakeEncoder(), image_encoder=None)

    models = DeviceModels(
        torch.device("cuda", 0), Settings(outputs_dir=tmp_path, models_dir=tmp_path), loader
    )
    plan = MemoryPlan(4, "cuda:0", 16.4, 30.0, 30.0, 128.0, True, "fake", "auto", text_encoder_gpu=True)
    monkeypatch.setattr(models, "fetch", lambda card, job: tmp_path)
    monkeypatch.setattr(models, "plan", lambda *args: plan)
    job = SimpleNamespace(report=lambda *args: None, check_cancelled=lambda: None, cancel_requested=False)
    encoders = []
    for _ in range(2):
        result, _, level = models.run_planned(job, card, SIZE, "auto", lambda pipe: pipe.text_encoder)
        encoders.append(result)
    assert loads == [4] and level == 4
    assert encoders[0] is encoders[1] and encoders[0].moves == ["cuda:0"]  # moved once, by the first job

    plan = replace(plan, text_encoder_gpu=False)  # less room now: back to RAM, still no reload
    models.run_planned(job, card, SIZE, "auto", lambda pipe: None)
    assert loads == [4] and encoders[0].moves == ["cuda:0", "cpu"]
