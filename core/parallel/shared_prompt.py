"""The prompt encoded once per split job: rank 0 runs the text encoder, the other ranks receive its output.

Ranks other than :data:`ENCODING_RANK` load their pipeline without the text encoder
(:func:`components_skipped`), which saves its memory and load time there (the UMT5-XXL of Wan is ~11 GB in
bf16). :func:`shared_prompt` swaps the pipeline's ``encode_prompt`` for one job: rank 0 encodes and
broadcasts the prompt and negative prompt embeddings; every other rank takes them from the broadcast.
Wan's text and image to video pipelines call ``encode_prompt`` once per job with the same arguments, so the
ranks meet in the broadcast in lockstep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from core.parallel.job_patch import patched

ENCODING_RANK = 0
TEXT_ENCODER = "text_encoder"


def components_skipped(rank: int) -> tuple[str, ...]:
    """Pipeline components rank ``rank`` does not load: the text encoder, except on the encoding rank."""
    return () if rank == ENCODING_RANK else (TEXT_ENCODER,)


def broadcast_tensors(
    tensors: tuple[torch.Tensor | None, ...] | None, count: int, device: torch.device
) -> tuple[torch.Tensor | None, ...]:
    """``tensors`` (given on :data:`ENCODING_RANK` only, None elsewhere) on ``device`` on every rank: shapes
    and dtypes first (one object broadcast), then each tensor (moved there first on the encoding rank, so a
    text encoder run on the CPU still sends over the GPUs' backend)."""
    source = dist.get_rank() == ENCODING_RANK
    header: list[Any] = [
        [None if t is None else (tuple(t.shape), t.dtype) for t in tensors] if source and tensors else None
    ]
    dist.broadcast_object_list(header, src=ENCODING_RANK)
    received: list[torch.Tensor | None] = []
    for index, meta in enumerate(header[0] or [None] * count):
        if meta is None:
            received.append(None)
            continue
        shape, dtype = meta
        if source and tensors:
            tensor = tensors[index].to(device).contiguous()
        else:
            tensor = torch.empty(shape, dtype=dtype, device=device)
        dist.broadcast(tensor, src=ENCODING_RANK)
        received.append(tensor)
    return tuple(received)


@contextlib.contextmanager
def shared_prompt(pipe: Any, device: torch.device) -> Iterator[None]:
    """For one job on a split rank: ``pipe.encode_prompt`` runs on :data:`ENCODING_RANK` only and the other
    ranks get its embeddings (on ``device``); a single process keeps the pipeline's own."""
    if not dist.is_initialized() or dist.get_world_size() < 2:
        yield
        return
    original = pipe.encode_prompt

    def encode_prompt(*args: Any, **kwargs: Any) -> tuple[torch.Tensor | None, ...]:
        encoded = original(*args, **kwargs) if dist.get_rank() == ENCODING_RANK else None
        return broadcast_tensors(encoded, 2, kwargs.get("device") or device)

    with patched(pipe, "encode_prompt", encode_prompt):
        yield
