"""MAGI-1's chunk / timestep schedule and its runtime options.

Time runs from 0 (noise) to 1 (clean) over ``steps`` steps (the published "sd3" schedule: ``t**2`` then a
shift of 3). Chunks enter the denoising window one stage apart; a stage is ``steps / window_size`` forward
steps, so up to ``window_size`` chunks are denoised together, each ``steps / window_size`` steps further than
the next. After a stage the oldest chunk is clean and leaves; at the first step of the next stage it is
forwarded once more at ``clean_t`` so its keys / values enter the KV cache. Each chunk attends itself and a
few earlier chunks, fewer the cleaner it is (``noise2clean_kvrange``; clean forwards
``clean_chunk_kvrange``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.validation import ConfigError, as_choice, as_float, as_int, from_mapping

SCHEDULES = ("sd3", "square", "piecewise", "identity")
SHORTCUT_MODES = ("8,16,16", "16,16,8")


@dataclass(frozen=True)
class MagiRunConfig:
    """Published runtime options (``runtime_config`` / ``engine_config`` of the MAGI-1 configs)."""

    chunk_width: int = 6
    schedule: str = "sd3"
    shift: float = 3.0
    clean_t: float = 0.9999
    noise2clean_kvrange: tuple[int, ...] = (5, 4, 3, 2)
    clean_chunk_kvrange: int = 1
    cfg_t_range: tuple[float, ...] = (0.0, 0.0217, 0.1, 0.3, 0.999)
    prev_chunk_scales: tuple[float, ...] = (1.5, 1.5, 1.5, 1.0, 1.0)
    text_scales: tuple[float, ...] = (7.5, 7.5, 7.5, 0.0, 0.0)
    shortcut_mode: str = "8,16,16"
    nearly_clean_threshold: float = 0.3
    nearly_clean_prev_scale: float = 0.7
    fps: int = 24

    def __post_init__(self) -> None:
        as_int("chunk_width", self.chunk_width, low=1, high=64)
        as_choice("schedule", self.schedule, SCHEDULES)
        as_float("shift", self.shift, low=1.0, high=100.0)
        as_float("clean_t", self.clean_t, low=0.0, high=1.0)
        as_int("clean_chunk_kvrange", self.clean_chunk_kvrange, low=1)
        as_choice("shortcut_mode", self.shortcut_mode, SHORTCUT_MODES)
        as_float("nearly_clean_threshold", self.nearly_clean_threshold, low=0.0)
        as_float("nearly_clean_prev_scale", self.nearly_clean_prev_scale, low=0.0, high=1.0)
        as_int("fps", self.fps, low=1)
        object.__setattr__(
            self, "noise2clean_kvrange", _ints("noise2clean_kvrange", self.noise2clean_kvrange)
        )
        for name in ("cfg_t_range", "prev_chunk_scales", "text_scales"):
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        if not (len(self.cfg_t_range) == len(self.prev_chunk_scales) == len(self.text_scales)):
            raise ConfigError("cfg_t_range, prev_chunk_scales and text_scales must have the same length")
        if list(self.cfg_t_range) != sorted(self.cfg_t_range) or self.cfg_t_range[0] > 0:
            raise ConfigError("cfg_t_range must rise from 0")

    @classmethod
    def from_dict(cls, data: dict) -> MagiRunConfig:
        return from_mapping(cls, data, where="MAGI-1 run options")

    @property
    def reach(self) -> int:
        """The most chunks (itself included) any chunk attends."""
        return max((*self.noise2clean_kvrange, self.clean_chunk_kvrange))

    def check_steps(self, steps: int, window_size: int) -> None:
        as_int("steps", steps, low=1)
        as_int("window_size", window_size, low=1, high=16)
        if steps % window_size:
            raise ConfigError(f"steps ({steps}) must be a multiple of window_size ({window_size})")
        if self.noise2clean_kvrange and steps % len(self.noise2clean_kvrange):
            raise ConfigError(f"steps ({steps}) must be a multiple of {len(self.noise2clean_kvrange)}")

    def chunk_reach(self, step: int, steps: int) -> int:
        """Chunks (itself included) a chunk at denoising ``step`` attends; ``step == steps`` is clean."""
        if step >= steps:
            return self.clean_chunk_kvrange
        if not self.noise2clean_kvrange:
            return step + 10**6
        per_stage = steps // len(self.noise2clean_kvrange)
        return self.noise2clean_kvrange[step // per_stage]

    def guidance_scales(self, t: float, guidance: float) -> tuple[float, float]:
        """(previous-chunk scale, text scale) at ``t``; ``guidance`` replaces the non-zero text scales."""
        ranges = torch.tensor(self.cfg_t_range) - 1e-7
        index = int(torch.searchsorted(ranges, torch.tensor(float(t)))) - 1
        index = min(max(index, 0), len(self.cfg_t_range) - 1)
        text = guidance if self.text_scales[index] > 0 else 0.0
        return self.prev_chunk_scales[index], text


def _ints(name: str, values) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"{name} must be a list of whole numbers")
    return tuple(as_int(name, v, low=1) for v in values)


def _floats(name: str, values) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{name} must be a non-empty list of numbers")
    return tuple(as_float(name, v) for v in values)


def timesteps(steps: int, run: MagiRunConfig) -> torch.Tensor:
    """``steps + 1`` times from 0 (noise) to 1 (clean); 12 steps follow the distilled shortcut pattern."""
    if steps == 12:
        base = torch.linspace(0, 1, 5) / 4
        base = base[:3] if run.shortcut_mode == "16,16,8" else torch.cat([base[:1], base[2:4]])
        t = torch.cat([base + offset for offset in torch.linspace(0, 1, 5)])[: steps + 1]
    else:
        t = torch.linspace(0, 1, steps + 1)
    if run.schedule == "sd3":
        t = t**2
        inverse = 1.0 / run.shift
        t = inverse * t / (1 + (inverse - 1) * t)
    elif run.schedule == "square":
        t = t**2
    elif run.schedule == "piecewise":
        t = torch.where(t < 0.875, t * (0.5 / 0.875), 0.5 + (t - 0.875) * (0.5 / 0.125))
    return t


def shortcut_size(steps: int, step_in_stage: int, run: MagiRunConfig) -> float:
    """The step-size input of the distilled models for a forward at ``step_in_stage`` of its stage."""
    if steps == 12:
        intervals = (1, 1, 2) if run.shortcut_mode == "16,16,8" else (2, 1, 1)
        return 4 / intervals[step_in_stage % 3] * 2
    return steps / 4 * 2


@dataclass(frozen=True)
class WindowStep:
    """One forward step of the window."""

    index: int
    stage: int
    step_in_stage: int
    chunks: tuple[int, ...]
    chunk_steps: tuple[int, ...]
    clean_chunk: int | None = None
    finished: int | None = None


def window_steps(total_chunks: int, first_chunk: int, window_size: int, steps: int) -> list[WindowStep]:
    """Every forward step of generating chunks ``first_chunk .. total_chunks - 1``.

    Chunk ``c`` enters at stage ``c - first_chunk`` and is at level ``stage - (c - first_chunk)``; its
    denoising step is ``level * steps_per_stage + step_in_stage``. The oldest chunk of a stage finishes
    with the stage's last step; the next stage first re-forwards it clean.
    """
    per_stage = steps // window_size
    count = total_chunks - first_chunk
    plan = []
    for stage in range(count + window_size - 1):
        chunks = tuple(
            c for c in range(first_chunk, total_chunks) if 0 <= stage - (c - first_chunk) < window_size
        )
        for step_in_stage in range(per_stage):
            levels = [stage - (c - first_chunk) for c in chunks]
            chunk_steps = tuple(level * per_stage + step_in_stage for level in levels)
            oldest_done = chunk_steps[0] + 1 == steps
            clean = chunks[0] - 1 if step_in_stage == 0 and chunks[0] > first_chunk else None
            plan.append(
                WindowStep(
                    index=len(plan),
                    stage=stage,
                    step_in_stage=step_in_stage,
                    chunks=chunks,
                    chunk_steps=chunk_steps,
                    clean_chunk=clean,
                    finished=chunks[0] if oldest_done else None,
                )
            )
    return plan
