"""Frame-by-frame upscaling with a Real-ESRGAN network: narrow, upscale in tiles, resize, crop.

Each frame is (optionally) narrowed to ``max_input_width`` on the reader thread, upscaled by the
network's own factor in overlapping tiles (memory bounded by the tile, not the frame), resized on the
device to the requested scale when it differs (x2 with an x4 model: x4, then an antialiased bicubic
resize down) and centre-cropped to even sides for H.264.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.upscale.esrgan import SRNetwork
from core.upscale.sizing import OutputSize

DEFAULT_TILE = 512
TILE_PAD = 16


def tiled_forward(network: SRNetwork, x: torch.Tensor, tile: int, pad: int = TILE_PAD) -> torch.Tensor:
    """``network`` over (1, 3, H, W) ``x`` in ``tile``-pixel tiles that each see ``pad`` more pixels on
    every side; only each tile's own part of the output is kept."""
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return network.module(x)
    scale = network.scale
    out = x.new_empty((x.shape[0], x.shape[1], height * scale, width * scale))
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            in_top, in_left = max(top - pad, 0), max(left - pad, 0)
            in_bottom, in_right = min(bottom + pad, height), min(right + pad, width)
            result = network.module(x[..., in_top:in_bottom, in_left:in_right])
            out[..., top * scale : bottom * scale, left * scale : right * scale] = result[
                ...,
                (top - in_top) * scale : (bottom - in_top) * scale,
                (left - in_left) * scale : (right - in_left) * scale,
            ]
    return out


class ESRGANStreamer:
    """Runs an :class:`SRNetwork` over a stream of frames to ``size``, one frame per yielded chunk."""

    def __init__(self, network: SRNetwork, size: OutputSize, tile: int = DEFAULT_TILE) -> None:
        self.network = network
        self.size = size
        self.tile = tile
        parameter = next(network.module.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    def narrow(self, frame: np.ndarray) -> np.ndarray:
        """The reader-thread step: an input frame resized to the narrowed input size (bicubic) if needed."""
        target = (self.size.narrowed_width, self.size.narrowed_height)
        if (frame.shape[1], frame.shape[0]) == target:
            return frame
        return np.array(Image.fromarray(frame).resize(target, Image.Resampling.BICUBIC))

    @torch.inference_mode()
    def upscale(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) narrowed frame -> uint8 (size.height, size.width, 3)."""
        size = self.size
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None]
        x = x.to(self.dtype).div(255.0)
        y = tiled_forward(self.network, x, self.tile)
        if tuple(y.shape[-2:]) != (size.scaled_height, size.scaled_width):
            y = F.interpolate(
                y.float(), (size.scaled_height, size.scaled_width), mode="bicubic", antialias=True
            )
        top = (size.scaled_height - size.height) // 2
        left = (size.scaled_width - size.width) // 2
        y = y[0, :, top : top + size.height, left : left + size.width]
        return y.float().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def run(
        self,
        frames: Iterable[np.ndarray],
        frame_count: int,
        seed: int = 0,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield each upscaled frame as a (1, H, W, 3) chunk; ``on_chunk(done, total)`` after each.
        ``seed`` is unused (the network is deterministic); the signature matches the FlashVSR streamer."""
        for done, frame in enumerate(frames, 1):
            out = self.upscale(frame)[None]
            if on_chunk is not None:
                on_chunk(done, frame_count)
            yield out
