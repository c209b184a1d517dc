"""FlashVSR's DiT over two devices: the first half of its blocks on device A, the second half on B.

A pipeline split of the layers, for when the model and the KV cache of a long 4K upscale do not fit one GPU.
The blocks run in order, so the output is the one-device output; activations cross once per chunk each way
(to B before the first block of B's half, back to A before the head). Each half keeps its own KV cache
entries (``StreamingKVCache`` stores a layer's windows where that layer computed them) and its own
cross-attention keys/values. Torch forward pre-hooks do the moves, so ``StreamingWanDiT`` is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from core.upscale.dit import ChunkContext, StreamingWanDiT
from core.upscale.loading import FlashVSRModel
from core.validation import ConfigError

HANDLES = "_pipeline_split_handles"


def pipeline_devices(device: torch.device, count: int) -> list[torch.device]:
    """``count`` devices starting at ``device``: the next visible GPUs (a worker sees its own GPU as
    ``cuda:0`` and its partner as ``cuda:1``), or ``device`` repeated on the CPU."""
    if count == 1 or device.type != "cuda":
        return [device] * count
    index = device.index or 0
    visible = torch.cuda.device_count()
    if index + count > visible:
        raise ConfigError(
            f"upscaling over {count} GPUs needs {count} visible GPUs from {device}; {visible} seen"
        )
    return [torch.device("cuda", index + offset) for offset in range(count)]


class _StageInputs:
    """Forward pre-hook of the second stage's blocks: moves the block's inputs to its device, keeping
    one moved copy of the chunk's context and of the modulation per chunk (``crossings`` counts them)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.crossings = 0
        self._source: tuple[Any, Any] | None = None
        self._moved: tuple[torch.Tensor, ChunkContext] | None = None

    def __call__(self, module: torch.nn.Module, args: tuple) -> tuple:
        x, t_mod, layer, chunk = args
        if self._source is None or self._source[0] is not chunk or self._source[1] is not t_mod:
            moved_chunk = replace(
                chunk, rope=chunk.rope.to(self.device), local_mask=chunk.local_mask.to(self.device)
            )
            self._source, self._moved = (chunk, t_mod), (t_mod.to(self.device), moved_chunk)
            self.crossings += 1
        assert self._moved is not None
        return x.to(self.device), self._moved[0], layer, self._moved[1]


def split_dit(model: FlashVSRModel, devices: Sequence[torch.device], boundary: int | None = None) -> None:
    """Run ``model``'s DiT over ``devices`` (1 or 2): blocks from ``boundary`` (default: half) on the second.

    Idempotent: the current split is undone first, and one device puts every block back on the first.
    The layers fed LQ features stay on the first device (the features are added before a block runs).
    """
    dit = model.dit
    unsplit_dit(dit)
    if len(devices) == 1:
        return
    if len(devices) != 2:
        raise ConfigError(f"FlashVSR splits over 1 or 2 devices, got {len(devices)}")
    blocks = list(dit.blocks)
    fed = model.config.lq_projection.layer_num
    boundary = len(blocks) // 2 if boundary is None else boundary
    if not fed <= boundary < len(blocks):
        raise ConfigError(
            f"split point {boundary} must leave the {fed} LQ-fed layer(s) first and a block last"
        )
    first, second = (torch.device(d) for d in devices)
    stage = _StageInputs(second)
    handles = []
    for block in blocks[boundary:]:
        _move_block(block, second)
        handles.append(block.register_forward_pre_hook(stage))
    handles.append(dit.head.register_forward_pre_hook(lambda module, args: (args[0].to(first), *args[1:])))
    setattr(dit, HANDLES, (handles, stage, first, boundary))


def unsplit_dit(dit: StreamingWanDiT) -> None:
    """Every block back on the first device, hooks removed (no-op when not split)."""
    state = getattr(dit, HANDLES, None)
    if state is None:
        return
    handles, _, first, boundary = state
    for handle in handles:
        handle.remove()
    for block in list(dit.blocks)[boundary:]:
        _move_block(block, first)
    delattr(dit, HANDLES)


def stage_report(dit: StreamingWanDiT) -> dict[str, Any] | None:
    """Where the blocks run, for the record (None when not split)."""
    state = getattr(dit, HANDLES, None)
    if state is None:
        return None
    _, stage, first, boundary = state
    return {"devices": [str(first), str(stage.device)], "blocks": [boundary, len(dit.blocks) - boundary]}


def crossings(dit: StreamingWanDiT) -> int:
    """How many times activations moved to the second device since the split (once per chunk)."""
    state = getattr(dit, HANDLES, None)
    return 0 if state is None else state[1].crossings


def _move_block(block: torch.nn.Module, device: torch.device) -> None:
    """The block's weights, and the prompt keys/values its cross-attention computed once, to ``device``."""
    block.to(device)
    cross = block.cross_attn
    if cross.cached_k is not None and cross.cached_v is not None:
        cross.cached_k, cross.cached_v = cross.cached_k.to(device), cross.cached_v.to(device)
