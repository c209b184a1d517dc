"""The TeaCache reuse criterion: accumulate the rescaled relative L1 change of a model input across steps.

Kept separate from any hook so other step caches (e.g. a chunk-wise cache) can reuse the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


def relative_l1(current: torch.Tensor, previous: torch.Tensor) -> float:
    """mean|current - previous| / mean|previous|, computed in float32 (0 when ``previous`` is all zeros)."""
    current, previous = current.float(), previous.float()
    scale = previous.abs().mean()
    if scale == 0:
        return 0.0
    return float(((current - previous).abs().mean() / scale).item())


def rescale(coefficients: Sequence[float], value: float) -> float:
    """Evaluate the polynomial ``coefficients`` (highest power first, like ``numpy.poly1d``) at ``value``.

    An empty sequence means no rescaling.
    """
    if not coefficients:
        return value
    result = 0.0
    for coefficient in coefficients:
        result = result * value + coefficient
    return result


@dataclass
class ReuseDecision:
    """Decides, step by step, whether a cached result may stand in for a full computation.

    Each call to :meth:`should_reuse` adds ``rescale(relative_l1(current, previous))`` to an accumulator;
    while the sum stays under ``threshold`` the cached result is reused, otherwise the caller computes and
    the sum restarts at 0. As in TeaCache4Wan2.1 the rescaled change is added with its sign: where a fitted
    polynomial is negative (Wan2.1 1.3B: relative changes of about 0.185-0.31) the sum shrinks and more
    steps are reused, and the published thresholds assume this. ``absolute=True`` adds ``|rescale(...)|``
    instead (Wan2GP's rule), so a negative fit never makes reuse easier and ``threshold=0`` never reuses.
    """

    threshold: float
    coefficients: tuple[float, ...] = ()
    absolute: bool = False
    accumulated: float = 0.0
    previous: torch.Tensor | None = field(default=None, repr=False)

    def should_reuse(self, current: torch.Tensor, *, force_compute: bool = False) -> bool:
        """Record ``current`` and say whether the cached result may be reused for this step."""
        previous, self.previous = self.previous, current.detach().clone()
        if previous is None or force_compute or previous.shape != current.shape:
            self.accumulated = 0.0
            return False
        change = rescale(self.coefficients, relative_l1(current, previous))
        self.accumulated += abs(change) if self.absolute else change
        if self.accumulated < self.threshold:
            return True
        self.accumulated = 0.0
        return False

    def reset(self) -> None:
        """Forget everything, as before the first step."""
        self.accumulated = 0.0
        self.previous = None
