"""Inputs every rank of a split must hold alike: rank 0's results of chosen pipeline methods, broadcast.

Every rank runs the whole pipeline on the same request, so its encodings already agree when the kernels
are deterministic; for the conditioning the denoising starts from (an image's CLIP embeddings, its VAE
latents), the task may name the pipeline methods whose results rank 0 then sends to all ranks, so the
ranks cannot start from different numbers whatever the kernels do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

import torch
import torch.distributed as dist

from core.parallel.job_patch import patched


def broadcast_from_rank0(value: Any) -> Any:
    """``value`` with every tensor in it (nested in tuples / lists) replaced by rank 0's."""
    if isinstance(value, torch.Tensor):
        tensor = value.contiguous()
        dist.broadcast(tensor, src=0)
        return tensor
    if isinstance(value, (tuple, list)):
        return type(value)(broadcast_from_rank0(item) for item in value)
    return value


def _from_rank0(method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    def shared(*args: Any, **kwargs: Any) -> Any:
        return broadcast_from_rank0(method(*args, **kwargs))

    return shared


@contextlib.contextmanager
def rank0_results(pipe: Any, names: tuple[str, ...]) -> Iterator[None]:
    """While entered, ``pipe``'s methods ``names`` (those it has) return rank 0's results on every rank;
    every rank must call them in the same order, as ranks running the same pipeline do."""
    with contextlib.ExitStack() as stack:
        for name in names:
            if callable(getattr(pipe, name, None)):
                stack.enter_context(patched(pipe, name, _from_rank0(getattr(pipe, name))))
        yield
