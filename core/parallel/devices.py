"""Showing a child process only its GPUs through ``CUDA_VISIBLE_DEVICES`` (no torch import here).

The variable must be in the child's environment when it starts: a spawned child imports the parent's main
module and whatever its target's arguments need before the target runs, and the first of those imports
that touches CUDA (torchao asks ``torch.cuda.is_available()`` at import) fixes the visible GPUs for good.
So the parent sets it around ``Process.start()`` (:func:`gpus_for_child`), not the child in its target.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence

_starting = threading.Lock()


def cuda_visible_devices(gpus: Sequence[int]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value that shows a child the parent's GPUs ``gpus``.

    ``gpus`` are indices as the parent sees them; when the parent itself runs under ``CUDA_VISIBLE_DEVICES``
    they are translated through it (parent ``2,3`` and gpus ``(1,)`` give ``3``).
    """
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [part.strip() for part in inherited.split(",")] if inherited else None
    return ",".join(visible[gpu] if visible else str(gpu) for gpu in gpus)


@contextlib.contextmanager
def gpus_for_child(gpus: Sequence[int] | None) -> Iterator[None]:
    """A child process started in this block sees only ``gpus`` (the parent's indices; its ``cuda:0`` is
    ``gpus[0]``) from its first instruction; None leaves the environment as it is. The parent's own
    variable is put back afterwards (its CUDA, if started, keeps what it saw anyway)."""
    if gpus is None:
        yield
        return
    with _starting:
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(gpus)
        try:
            yield
        finally:
            if previous is None:
                del os.environ["CUDA_VISIBLE_DEVICES"]
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous
