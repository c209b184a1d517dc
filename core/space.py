"""Running as a Hugging Face Space: detect it, and on ZeroGPU run each job inside ``spaces.GPU``.

On ZeroGPU a GPU is attached only while a function decorated with ``spaces.GPU`` runs, for at most the
duration it asks for; the duration is estimated per request here. Jobs carry the submitting request's
context (see ``core.jobs.Job.context``), so the decorator sees the user it bills.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.jobs import Executor
from core.tasks import task_for

DEFAULT_SPACE_MODEL = "wan2.1-t2v-1.3b"
SECONDS_PER_STEP_1_3B_480P = 1.3
"""Measured on an H100: one CFG step (two forwards) of Wan2.1 1.3B at 480x832x81 (docs/benchmarks.md)."""
REFERENCE_TOKENS = 21 * 60 * 104 / 4
MIN_SECONDS, MAX_SECONDS = 60, 900
Shown = TypeVar("Shown")


@dataclass(frozen=True)
class SpaceInfo:
    """Whether the app runs as a Space, and whether that Space lends GPUs per call (ZeroGPU)."""

    space_id: str | None
    zero_gpu: bool

    @property
    def is_space(self) -> bool:
        return self.space_id is not None


def detect_space(env: Mapping[str, str] = os.environ) -> SpaceInfo:
    """Read the variables Hugging Face sets inside a Space."""
    zero = env.get("SPACES_ZERO_GPU", "").lower() in ("1", "true", "yes")
    return SpaceInfo(space_id=env.get("SPACE_ID") or None, zero_gpu=zero)


def estimate_gpu_seconds(request: Any) -> int:
    """GPU seconds to ask ZeroGPU for: load time plus steps scaled by model size and token count (x1.5);
    for a long video (chain) the sum over its parts, within the same cap."""
    return min(MAX_SECONDS, sum(_part_seconds(part) for part in task_for(request).parts(request)))


def _part_seconds(request: Any) -> int:
    """:func:`estimate_gpu_seconds` of one request that runs one model (tokens from its card's arch facts)."""
    card = request.card
    frames = getattr(request, "frames", None) or card.defaults.frames
    width = getattr(request, "width", None) or card.resolution(card.defaults.resolution).width
    height = getattr(request, "height", None) or card.resolution(card.defaults.resolution).height
    steps = getattr(request, "steps", None) or card.defaults.steps
    tokens = card.arch.tokens(width, height, frames) if card.arch else 0  # frame upscalers: load time only
    size = max(card.params_billion, 0.1) / 1.3
    scale = tokens / REFERENCE_TOKENS
    per_step = SECONDS_PER_STEP_1_3B_480P * size * scale * (1 + scale) / 2  # linear layers + attention
    seconds = 1.5 * (30 + steps * per_step)
    return int(min(MAX_SECONDS, max(MIN_SECONDS, seconds)))


def on_zero_gpu(execute: Executor, space: SpaceInfo) -> Executor:
    """``execute`` wrapped in ``spaces.GPU`` with a per-job duration when on ZeroGPU, else unchanged."""
    if not space.zero_gpu:
        return execute
    spaces = importlib.import_module("spaces")
    return spaces.GPU(duration=lambda job: estimate_gpu_seconds(job.request))(execute)


def for_display(value: Shown, space: SpaceInfo, outputs_dir: Path) -> Shown:
    """``value`` as the UI may show it. Locally unchanged; in a Space, whose server paths mean nothing to
    visitors, every string (inside dicts, lists and tuples too) loses the outputs folder prefix, and an
    absolute path elsewhere is cut to its file name."""
    if not space.is_space:
        return value
    return _without_local_paths(value, {str(outputs_dir), str(Path(outputs_dir).resolve())})


def _without_local_paths(value: Any, prefixes: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: _without_local_paths(item, prefixes) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_without_local_paths(item, prefixes) for item in value)
    if not isinstance(value, str):
        return value
    for prefix in sorted(prefixes, key=len, reverse=True):
        value = value.replace(prefix + os.sep, "").replace(prefix, ".")
    return Path(value).name if os.path.isabs(value) else value
