"""A model's few-step mode as its card states it (the ``few_step`` key): the authors' steps, shift,
scheduler and CFG, the step-distill LoRAs to load (repo, file, expert, size) or, for a distilled
checkpoint, nothing more, and what the mode trades."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.validation import ConfigError, as_choice, as_float, as_int, as_text

SCHEDULERS = ("euler", "dmd", "unipc")
"""euler: Euler on the authors' timesteps (lightx2v, Lightning); dmd: FastVideo's x0-and-renoise sampler
(``core.few_step_schedulers``); unipc: the pipeline's own scheduler."""


@dataclass(frozen=True)
class FewStepLora:
    """A step-distill LoRA file on the Hub."""

    repo: str
    file: str
    size_mb: float
    expert: str = "both"
    strength: float = 1.0

    def entry(self) -> dict[str, Any]:
        """The request's ``loras`` entry that fetches it and fuses it into the DiT (it stays for the
        preset's every job: merged, it costs nothing per step)."""
        return {
            "name": self.file,
            "repo": self.repo,
            "expert": self.expert,
            "strength": self.strength,
            "fuse": True,
        }


@dataclass(frozen=True)
class FewStep:
    """The few-step settings: ``steps`` at ``guidance`` (1: no CFG) with ``scheduler`` at ``flow_shift``;
    ``timesteps``: the authors' list, sampled when the run takes ``steps`` steps; ``source``: where the
    settings come from."""

    steps: int
    guidance: float
    flow_shift: float
    scheduler: str
    trade: str
    source: str
    loras: tuple[FewStepLora, ...] = ()
    timesteps: tuple[int, ...] = ()


def parse_few_step(data: dict[str, Any] | None, *, where: str) -> FewStep | None:
    """Validate a card's ``few_step`` block (None when the card has none)."""
    if not data:
        return None
    data = dict(data)
    try:
        loras = tuple(FewStepLora(**entry) for entry in data.pop("loras", ()) or ())
        preset = FewStep(**data, loras=loras)
    except TypeError as error:
        raise ConfigError(f"{where} few_step: {error}") from error
    as_int(f"{where} few_step steps", preset.steps, low=1, high=16)
    as_float(f"{where} few_step guidance", preset.guidance, low=0.0, high=30.0)
    as_float(f"{where} few_step flow_shift", preset.flow_shift, low=0.0, high=100.0)
    as_choice(f"{where} few_step scheduler", preset.scheduler, SCHEDULERS)
    as_text(f"{where} few_step trade", preset.trade, required=True)
    listed = tuple(int(t) for t in preset.timesteps)
    if listed and (
        len(listed) != preset.steps or list(listed) != sorted(listed, reverse=True) or listed[0] > 1000
    ):
        raise ConfigError(f"{where} few_step timesteps: {preset.steps} descending values of at most 1000")
    object.__setattr__(preset, "timesteps", listed)
    for lora in preset.loras:
        as_choice(f"{where} few_step lora expert", lora.expert, ("both", "high", "low"))
    return preset
