"""The few-step mode of a Wan-family run: the card's settings as request defaults, its scheduler, and CFG
on the first step only (Wan2GP's phases: guidance > 1 for step 1 against the negative prompt, then 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from core.few_step_schedulers import DmdScheduler, few_step_scheduler
from core.lora.spec import LoraSpec, parse_loras
from core.validation import ConfigError
from weights.few_step import FewStep
from weights.registry import ModelCard, cards_for

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


def few_step_settings(card: ModelCard, asked: bool) -> FewStep | None:
    """The card's few-step settings when ``asked`` (a clear error naming the models that have them)."""
    if not asked:
        return None
    if card.few_step is None:
        having = ", ".join(c.name for c in cards_for("t2v") if c.few_step is not None)
        raise ConfigError(f"{card.name} has no few-step mode; models with one: {having}")
    return card.few_step


def with_preset_loras(preset: FewStep, loras: tuple[LoraSpec, ...]) -> tuple[LoraSpec, ...]:
    """The preset's step-distill LoRAs first, then the user's. A user entry naming a preset file (its
    loras-folder name) sets that LoRA's strength (0 drops its effect) and keeps its repo and merge."""
    listed = {spec.file_name: spec for spec in loras}
    presets = parse_loras([lora.entry() for lora in preset.loras])
    names = {spec.file_name for spec in presets}
    for spec in presets:
        asked = listed.get(spec.file_name)
        if asked is not None and spec.expert != "both" and asked.expert not in ("both", spec.expert):
            raise ConfigError(
                f"LoRA {asked.name}: the fast mode loads it into the {spec.expert}-noise expert; list it "
                f"with expert {spec.expert} or both"
            )
    chosen = tuple(
        replace(spec, strength=listed[spec.file_name].strength) if spec.file_name in listed else spec
        for spec in presets
    )
    return chosen + tuple(spec for spec in loras if spec.file_name not in names)


ORIGINAL_SCHEDULER = "_video_studio_scheduler"


def use_few_step_scheduler(
    pipe: Any, card: ModelCard, shift: float, few_step: bool, steps: int, generator: torch.Generator
) -> None:
    """Give ``pipe`` the card's few-step sampler at ``shift`` for a few-step run (on the authors' timesteps
    when ``steps`` is their count; DMD draws its fresh noise from ``generator``), and its own scheduler
    back for any other run (the loaded pipeline serves both)."""
    original = getattr(pipe, ORIGINAL_SCHEDULER, None)
    preset = card.few_step
    if not few_step or preset is None or preset.scheduler not in ("euler", "dmd"):
        if original is not None:
            pipe.scheduler = original
            setattr(pipe, ORIGINAL_SCHEDULER, None)
        return
    if original is None:
        setattr(pipe, ORIGINAL_SCHEDULER, pipe.scheduler)
    listed = preset.timesteps if steps == len(preset.timesteps) else ()
    pipe.scheduler = few_step_scheduler(preset.scheduler, shift, listed)
    if isinstance(pipe.scheduler, DmdScheduler):
        pipe.scheduler.noise_generator = generator


def first_step_cfg(callback: StepCallback, request: Any) -> StepCallback:
    """``callback`` that also turns CFG off after the first step when the request asks for CFG on the
    first step only (the pipeline then runs the conditional pass alone: guidance 1)."""
    if request.first_step_guidance is None:
        return callback

    def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if index == 0:
            pipe._guidance_scale = 1.0
            pipe._guidance_scale_2 = 1.0
        return callback(pipe, index, timestep, tensors)

    return on_step_end


def few_step_record(request: Any) -> dict[str, Any] | None:
    """The record's few-step entry: the card's settings that ran and the first-step CFG (None: off)."""
    preset = request.card.few_step if request.few_step else None
    if preset is None:
        return (
            None
            if request.first_step_guidance is None
            else {"first_step_guidance": request.first_step_guidance}
        )
    listed = request.steps == len(preset.timesteps)
    return {
        "scheduler": preset.scheduler,
        "timesteps": list(preset.timesteps) if listed else "evenly spaced (steps differ from the authors')",
        "source": preset.source,
        "first_step_guidance": request.first_step_guidance,
    }
