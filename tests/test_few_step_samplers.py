"""The samplers step-distilled models were trained for: Euler on the authors' timesteps (lightx2v, Lightning)
and FastVideo's DMD sampler (FastWan). Expected values follow the authors' formulas: lightx2v's
``WanStepDistillScheduler.set_denoising_timesteps`` (sigmas of linspace(1, 0, 1001)[:-1] shifted, taken at
index 1000 - t) and FastVideo's ``DmdStrategy`` (x0 = x - sigma v, then (1 - sigma') x0 + sigma' noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.few_step_schedulers import AuthorsEulerScheduler, DmdScheduler, few_step_scheduler
from core.jobs import Job
from core.pipelines import load_diffusers_pipeline
from core.tasks.few_step import use_few_step_scheduler
from core.tasks.t2v import T2VRequest, generate_t2v
from core.validation import ConfigError
from weights.few_step import parse_few_step
from weights.registry import get_card


def lightx2v_sigmas(timesteps: list[int], shift: float) -> list[float]:
    """lightx2v's formula, written out: the shifted 1000-step grid at index 1000 - t."""
    grid = np.linspace(1.0, 0.0, 1001)[:-1]
    grid = shift * grid / (1 + (shift - 1) * grid)
    return [float(grid[1000 - t]) for t in timesteps]


def test_euler_runs_on_the_authors_sigmas_not_diffusers_spacing() -> None:
    preset = get_card("wan2.1-t2v-14b").few_step
    scheduler = few_step_scheduler(preset.scheduler, preset.flow_shift, preset.timesteps)
    assert isinstance(scheduler, AuthorsEulerScheduler)
    scheduler.set_timesteps(4, device="cpu")
    expected = lightx2v_sigmas([1000, 750, 500, 250], 5.0)  # 1, 0.9375, 0.8333, 0.625
    assert scheduler.sigmas.tolist() == pytest.approx([*expected, 0.0], abs=1e-6)
    assert scheduler.timesteps.tolist() == pytest.approx([s * 1000 for s in expected], abs=1e-3)
    # Wan2.2 Lightning: two steps on each expert (A14B's boundary is timestep 875)
    lightning = get_card("wan2.2-t2v-a14b").few_step
    scheduler = few_step_scheduler(lightning.scheduler, lightning.flow_shift, lightning.timesteps)
    scheduler.set_timesteps(4)
    assert [t >= 875 for t in scheduler.timesteps.tolist()] == [True, True, False, False]


def test_euler_step_goes_from_sigma_to_the_next() -> None:
    scheduler = few_step_scheduler("euler", 5.0, (1000, 750, 500, 250))
    scheduler.set_timesteps(4)
    x, v = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    sigmas = [*lightx2v_sigmas([1000, 750, 500, 250], 5.0), 0.0]
    for i, t in enumerate(scheduler.timesteps):
        expected = (x - sigmas[i] * v) + sigmas[i + 1] * v  # lightx2v's step_post
        x = scheduler.step(v, t, x, return_dict=False)[0]
        torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def test_dmd_predicts_x0_and_renoises_to_the_next_timestep() -> None:
    scheduler = few_step_scheduler("dmd", 8.0, (1000, 757, 522))
    assert isinstance(scheduler, DmdScheduler)
    scheduler.set_timesteps(3)
    assert scheduler.timesteps.tolist() == [1000.0, 757.0, 522.0]  # what the DiT sees
    sigmas = scheduler.sigmas.tolist()
    assert sigmas[0] == pytest.approx(1.0) and sigmas[-1] == 0.0
    assert [abs(s * 1000 - t) < 1.0 for s, t in zip(sigmas[1:3], (757, 522), strict=True)] == [True, True]
    scheduler.noise_generator = torch.Generator().manual_seed(3)
    draw = torch.Generator().manual_seed(3)
    x, v = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    for i, t in enumerate(scheduler.timesteps):
        clean = x - sigmas[i] * v
        expected = (
            clean
            if i == 2
            else (1 - sigmas[i + 1]) * clean + sigmas[i + 1] * torch.randn(x.shape, generator=draw)
        )
        x = scheduler.step(v, t, x, return_dict=False)[0]
        torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def test_card_timesteps_are_checked() -> None:
    base = {"steps": 3, "guidance": 1.0, "flow_shift": 8.0, "scheduler": "dmd", "trade": "t", "source": "s"}
    assert parse_few_step({**base, "timesteps": [1000, 757, 522]}, where="card").timesteps == (1000, 757, 522)
    for bad in ([1000, 757], [522, 757, 1000], [1200, 757, 522]):
        with pytest.raises(ConfigError, match="timesteps"):
            parse_few_step({**base, "timesteps": bad}, where="card")


def test_the_dit_sees_the_dmd_timesteps_end_to_end(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny model with FastWan's few-step card settings: three DiT calls at 1000, 757 and 522, fresh noise
    between them from the run's seed (the same seed gives the same video, another seed another)."""
    card = get_card("tiny-wan")
    preset = parse_few_step(
        {
            "steps": 3,
            "guidance": 1.0,
            "flow_shift": 8.0,
            "scheduler": "dmd",
            "timesteps": [1000, 757, 522],
            "trade": "t",
            "source": "s",
        },
        where="test",
    )
    monkeypatch.setattr(type(card), "few_step", property(lambda self: preset), raising=False)
    pipe = load_diffusers_pipeline(card, models_dir / "tiny-wan", torch.device("cpu"))
    seen: list[float] = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(float(kwargs["timestep"].flatten()[0])), with_kwargs=True
    )
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=4, few_step=True)
    assert request.steps == 3
    first = generate_t2v(pipe, request, Job(None))
    assert seen == [1000.0, 757.0, 522.0] and isinstance(pipe.scheduler, DmdScheduler)
    again = generate_t2v(pipe, request, Job(None))
    other = generate_t2v(pipe, T2VRequest(model="tiny-wan", prompt="a cat", seed=5, few_step=True), Job(None))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    use_few_step_scheduler(pipe, card, 8.0, False, 3, torch.Generator())
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"  # its own scheduler back
