"""The samplers step-distilled Wan models were trained for, as diffusers schedulers a Wan pipeline runs.

- ``euler`` on the authors' timesteps (lightx2v's ``WanStepDistillScheduler``, Wan2.2-Lightning): the
  timesteps ``t`` of their list sit on the 1000-step training grid, ``sigma = shift * s / (1 + (shift - 1)
  * s)`` with ``s = t / 1000``, the DiT sees ``sigma * 1000`` and each step is Euler from one sigma to the
  next (0 after the last). diffusers' own ``set_timesteps(n)`` spaces sigmas from 1 to 1/1000 instead
  ([1, 0.909, 0.715, 0.005] at 4 steps and shift 5 where the LoRA was trained on [1, 0.9375, 0.833, 0.625]).
- ``dmd`` (FastVideo's ``DmdStrategy``, FastWan): the DiT sees the listed timesteps themselves; each step
  predicts the clean latents ``x0 = x - sigma * v`` (sigma: the nearest point of the shifted 1000-step
  grid) and, before the last, noises them afresh to the next timestep's sigma,
  ``(1 - sigma') * x0 + sigma' * noise``, the noise drawn from the run's generator on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteSchedulerOutput

TRAIN_STEPS = 1000


def shifted(s: np.ndarray, shift: float) -> np.ndarray:
    """The flow-matching time shift of sigmas ``s``."""
    return shift * s / (1 + (shift - 1) * s)


class AuthorsEulerScheduler(FlowMatchEulerDiscreteScheduler):
    """Euler on the authors' timesteps at the scheduler's shift, whatever step count the pipeline asks
    for (the pipeline's count is checked against the list by the request)."""

    authors_timesteps: tuple[int, ...] = ()

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, **_: Any) -> None:
        sigmas = np.array(self.authors_timesteps, dtype=np.float64) / TRAIN_STEPS
        super().set_timesteps(sigmas=sigmas.astype(np.float32).tolist(), device=device)


class DmdScheduler(FlowMatchEulerDiscreteScheduler):
    """FastVideo's DMD sampler: predict x0, re-noise to the next listed timestep (see the module)."""

    authors_timesteps: tuple[int, ...] = ()
    noise_generator: torch.Generator | None = None
    grid_shift: float = 1.0

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, **_: Any) -> None:
        grid = shifted(np.linspace(1.0, 1.0 / TRAIN_STEPS, TRAIN_STEPS), self.grid_shift)
        listed = np.array(self.authors_timesteps, dtype=np.float64)
        nearest = np.abs(grid[None, :] * TRAIN_STEPS - listed[:, None]).argmin(axis=1)
        super().set_timesteps(
            sigmas=grid[nearest].astype(np.float32).tolist(),
            timesteps=listed.astype(np.float32).tolist(),
            device=device,
        )

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        *args: Any,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> Any:
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        clean = sample.float() - sigma * model_output.float()
        if sigma_next > 0:
            noise = torch.randn(sample.shape, generator=self.noise_generator, dtype=torch.float32)
            clean = (1 - sigma_next) * clean + sigma_next * noise.to(sample.device)
        self._step_index += 1
        prev = clean.to(sample.dtype)
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=prev) if return_dict else (prev,)


def few_step_scheduler(
    kind: str, shift: float, timesteps: tuple[int, ...]
) -> FlowMatchEulerDiscreteScheduler:
    """The scheduler of a few-step preset: ``kind`` (euler or dmd) on the authors' ``timesteps`` at
    ``shift``; diffusers' Euler spacing when the card lists no timesteps."""
    if not timesteps:
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN_STEPS, shift=shift)
    if kind == "dmd":
        scheduler = DmdScheduler(num_train_timesteps=TRAIN_STEPS, shift=1.0)
        scheduler.grid_shift = shift
    else:
        scheduler = AuthorsEulerScheduler(num_train_timesteps=TRAIN_STEPS, shift=shift)
    scheduler.authors_timesteps = tuple(timesteps)
    return scheduler
