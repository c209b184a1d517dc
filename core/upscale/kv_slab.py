"""One slab of cached key or value windows, as stored by :class:`~core.upscale.kv_cache.StreamingKVCache`.

``model`` storage keeps the windows as they are; ``fp8`` keeps e4m3 values with a float32 scale per token
and head (amax / 448 over the head's channels), which halves the bytes of bf16 windows. Host copies go to
pinned memory so their transfers are asynchronous; a dropped slab's buffers are reused when shapes match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


@dataclass
class Slab:
    data: torch.Tensor
    scale: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (0 if self.scale is None else self.scale.nbytes)


def _store(source: torch.Tensor, device: torch.device, spare: torch.Tensor | None) -> torch.Tensor:
    """``source`` copied to ``device`` (pinned when that is the host and the source a GPU), into ``spare``
    when it fits."""
    if spare is not None and spare.shape == source.shape and spare.dtype == source.dtype:
        target = spare
    else:
        pin = device.type == "cpu" and source.device.type == "cuda"
        target = torch.empty(source.shape, dtype=source.dtype, device=device, pin_memory=pin)
    target.copy_(source, non_blocking=True)
    return target


class SlabCodec:
    """Encodes windows (n, 128, heads*head_dim) into a :class:`Slab` and back."""

    def __init__(self, storage: str, num_heads: int) -> None:
        self.storage = storage
        self.num_heads = num_heads

    def encode(self, windows: torch.Tensor, device: torch.device, spare: Slab | None) -> Slab:
        if self.storage == "model":
            return Slab(_store(windows, device, None if spare is None else spare.data))
        heads = windows.unflatten(-1, (self.num_heads, -1)).float()
        scale = heads.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / FP8_MAX
        data = (heads / scale).to(FP8).flatten(-2)
        return Slab(
            _store(data, device, None if spare is None else spare.data),
            _store(scale, device, None if spare is None else spare.scale),
        )

    def decode(self, slab: Slab, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        data = slab.data.to(device, non_blocking=True)
        if slab.scale is None:
            return data
        scale = slab.scale.to(device, non_blocking=True)
        heads = data.unflatten(-1, (self.num_heads, -1)).float() * scale
        return heads.flatten(-2).to(dtype)
