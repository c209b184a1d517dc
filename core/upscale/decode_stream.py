"""Decoding a chunk's latents to uint8 frames: decoder, AdaIN colour fix and the read-back to the host.

With ``overlap`` the streamer collects a chunk's frames only after queueing the next chunk; on a CUDA
device the work then runs on a side stream and the frames come back through pinned
memory, so the next chunk's DiT is queued on the main stream before this chunk's frames are waited for
(:meth:`ChunkDecoder.submit` returns at once, :meth:`ChunkDecoder.finish` waits). The kernels and their
order are the same either way, so the frames are too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.upscale.color import adain_color_fix
from core.upscale.loading import FlashVSRModel


@dataclass
class PendingFrames:
    """Frames of one chunk: uint8 (T, H, W, 3), ready once ``event`` (if any) has completed."""

    frames: torch.Tensor
    event: torch.cuda.Event | None = None


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3) on the same device (the official ``tensor2video``)."""
    x = (frames[0].float() + 1.0).mul(127.5).clamp(0, 255)
    return x.permute(1, 2, 3, 0).to(torch.uint8)


class ChunkDecoder:
    """Decodes chunks in order for one video (the decoders keep state from chunk to chunk)."""

    def __init__(self, model: FlashVSRModel, color_fix: bool, overlap: bool) -> None:
        self.model = model
        self.color_fix = color_fix
        self.overlap = overlap
        cuda = model.device.type == "cuda"
        self.stream = torch.cuda.Stream(model.device) if overlap and cuda else None

    def _decode(self, latents: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        model = self.model
        if model.tc_decoder is not None:
            decoded = model.tc_decoder.decode(latents, cond)
        else:
            assert model.vae_decoder is not None
            decoded = model.vae_decoder.decode(latents)
        if self.color_fix:
            decoded = adain_color_fix(decoded, cond)
        return to_uint8(decoded)

    def submit(self, latents: torch.Tensor, cond: torch.Tensor) -> PendingFrames:
        """Start decoding ``latents`` with their LQ frames ``cond`` (1, 3, T, H, W)."""
        if self.stream is None:
            return PendingFrames(self._decode(latents, cond))
        main = torch.cuda.current_stream(latents.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            frames = self._decode(latents, cond)
            host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        for tensor in (latents, cond):
            tensor.record_stream(self.stream)
        return PendingFrames(host, event)

    @staticmethod
    def finish(pending: PendingFrames) -> np.ndarray:
        """Wait for ``pending`` and return its frames as a numpy array."""
        if pending.event is not None:
            pending.event.synchronize()
        return pending.frames.cpu().numpy()
