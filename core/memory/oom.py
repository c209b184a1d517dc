"""Recover from running out of GPU memory: free it, step up one memory level, try once more."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from core.memory.levels import LEVELS, MAX_LEVEL
from core.memory.planner import MemoryPlan
from core.pipelines import free_memory

T = TypeVar("T")


def step_up(level: int) -> int | None:
    """The level to retry at after running out of GPU memory at ``level``: the next one, None at the top.
    Every OOM retry (one device, or a split's ranks) steps up through this one rule."""
    return level + 1 if level < MAX_LEVEL else None


def _attempt(fn: Callable[[], T]) -> tuple[bool, T | None, str]:
    """Run ``fn``; on OOM return its message with the traceback (and the tensors it pins) already gone."""
    try:
        return True, fn(), ""
    except torch.OutOfMemoryError as error:
        message = str(error).splitlines()[0] if str(error) else "CUDA out of memory"
    free_memory()
    return False, None, message


def run_with_oom_retry(
    fn: Callable[[], T],
    plan: MemoryPlan,
    reapply: Callable[[int], None],
    notify: Callable[[str], None],
    *,
    release: Callable[[], None] | None = None,
) -> T:
    """``fn()``; after an out-of-memory error, ``reapply(plan.level + 1)`` and run ``fn()`` once more.

    ``reapply`` must put the pipeline ``fn`` uses at the new level (in the app: reload it through
    ``DeviceModels.get(card, folder, level)``). ``notify`` tells the user what happened. When the retry
    fails too, or there is no higher level, ``release`` (e.g. ``DeviceModels.unload``) frees the
    pipeline so the GPU is not left holding it, and ``torch.OutOfMemoryError`` is raised.
    """
    ok, result, message = _attempt(fn)
    if ok:
        return result
    level = step_up(plan.level)
    if level is None:
        _give_up(release)
        raise torch.OutOfMemoryError(
            f"Out of GPU memory at the lowest-memory level {MAX_LEVEL} ({message}). "
            "Try fewer frames, a smaller size or a smaller model."
        )
    notify(
        f"Out of GPU memory at level {plan.level} ({LEVELS[plan.level].label}); "
        f"retrying once at level {level} ({LEVELS[level].label})."
    )
    try:
        reapply(level)
    except torch.OutOfMemoryError:
        _give_up(release)
        raise
    ok, result, message = _attempt(fn)
    if ok:
        return result
    _give_up(release)
    raise torch.OutOfMemoryError(
        f"Out of GPU memory again at level {level} ({message}). Choose a higher level, fewer frames or a "
        "smaller size."
    )


def _give_up(release: Callable[[], None] | None) -> None:
    if release is not None:
        release()
    free_memory()
