"""Streaming FlashVSR inference: LQ frames in, super-resolved frames out, one chunk at a time.

The chunk schedule is the official v1.1 one. The first chunk denoises 6 latent frames from LQ frames
0-24 and decodes 21 output frames; every later chunk denoises 2 latent frames (RoPE time positions
continue), reads 8 more LQ frames and decodes 8 output frames. Output frame j matches LQ frame j. The
starting noise comes from :class:`~core.upscale.noise.ChunkNoise` (the official whole-video draw on CUDA).
The video is padded with its last frame to the next length the schedule accepts (8n+1, at least 25, with
``8n-3`` covering every input frame) and the output is cut back to the input's frame count.

Only a window of at most 25 LQ frames is held; the self-attention KV cache keeps 3 slabs per layer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from core.upscale.config import SparsityConfig
from core.upscale.decode_stream import ChunkDecoder, PendingFrames
from core.upscale.kv_cache import StreamingKVCache
from core.upscale.loading import FlashVSRModel
from core.upscale.noise import NOISE_DRAWS, ChunkNoise, default_noise_draw
from core.upscale.sparse_mask import WINDOW, local_window_mask
from core.upscale.speed import VSRSpeed
from core.validation import as_choice

FIRST_LATENTS, LATENTS_PER_CHUNK = 6, 2
FIRST_OUTPUT, OUTPUT_PER_CHUNK = 21, 8


@dataclass(frozen=True)
class FramePlan:
    """How many LQ frames the schedule reads (``padded``) and how many chunks it runs."""

    frames: int
    padded: int
    chunks: int


def plan_frames(frames: int) -> FramePlan:
    """The padded length 8n+1 (>= 25) whose 8n-3 outputs cover ``frames`` input frames."""
    if frames < 1:
        raise ValueError("the video has no frames")
    n = max(3, -(-(frames + 3) // 8))
    padded = 8 * n + 1
    return FramePlan(frames, padded, (padded - 1) // 8 - 2)


def padded_frames(frames: Iterable[np.ndarray], total: int) -> Iterator[np.ndarray]:
    """``frames`` followed by copies of the last one up to ``total`` frames."""
    last = None
    count = 0
    for frame in frames:
        if count == total:
            return
        last = frame
        count += 1
        yield frame
    if last is None:
        raise ValueError("the video has no frames")
    for _ in range(total - count):
        yield last


class FlashVSRStreamer:
    """Runs a loaded :class:`FlashVSRModel` over a stream of frames already resized to the output size."""

    def __init__(
        self,
        model: FlashVSRModel,
        sparsity: SparsityConfig | None = None,
        color_fix: bool = True,
        offload_kv_cache: bool = False,
        noise_draw: str | None = None,
        speed: VSRSpeed | None = None,
    ) -> None:
        """``noise_draw`` is "official" or "per-chunk" (:mod:`core.upscale.noise`); by default the official
        draw on CUDA and the per-chunk one elsewhere. :attr:`noise_draw` says which one runs. ``speed``: the
        run-time options of :class:`VSRSpeed` (attention, KV storage and prefetch, decode overlap; compile
        is applied to the model by :func:`core.upscale.compile_regions.compile_flashvsr`)."""
        self.model = model
        self.noise_draw = as_choice("noise draw", noise_draw or default_noise_draw(model.device), NOISE_DRAWS)
        self.sparsity = sparsity or SparsityConfig()
        self.color_fix = color_fix
        self.offload_kv_cache = offload_kv_cache
        self.speed = speed or VSRSpeed()
        self.last_kv_cache_bytes = 0

    def _to_tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        """uint8 (T, H, W, 3) frames -> (1, 3, T, H, W) in [-1, 1] on the model's device and dtype."""
        x = torch.from_numpy(np.stack(frames)).to(self.model.device)
        x = x.permute(3, 0, 1, 2).unsqueeze(0).to(torch.float32).div(127.5).sub(1.0)
        return x.to(self.model.dtype)

    def run(
        self,
        frames: Iterable[np.ndarray],
        frame_count: int,
        seed: int = 0,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield uint8 (T, H, W, 3) output frames chunk by chunk; ``on_chunk(done, total)`` after each."""
        plan = plan_frames(frame_count)
        model = self.model
        source = iter(padded_frames(frames, plan.padded))
        window: deque[np.ndarray] = deque()
        window_start = 0
        speed = self.speed
        cache = StreamingKVCache(
            model.config.dit.num_layers,
            int(self.sparsity.kv_ratio),
            torch.device("cpu") if self.offload_kv_cache else None,
            storage=speed.kv_cache,
            num_heads=model.config.dit.num_heads,
            prefetch=speed.kv_prefetch,
        )
        model.lq_projection.reset()
        decoder = model.tc_decoder or model.vae_decoder
        assert decoder is not None
        decoder.reset()
        decoding = ChunkDecoder(model, self.color_fix, speed.overlap_decode)
        pending: PendingFrames | None = None
        emitted = 0
        local_mask = topk = noise = None
        try:
            for chunk in range(plan.chunks):
                read_until = 25 if chunk == 0 else 8 * chunk + 25
                while window_start + len(window) < read_until:
                    window.append(next(source))
                clips = (
                    [(0, 1), *((4 * i - 3, 4 * i + 1) for i in range(1, 7))]
                    if chunk == 0
                    else [(8 * chunk + 17, 8 * chunk + 21), (8 * chunk + 21, 8 * chunk + 25)]
                )
                features = self._project(window, window_start, clips)
                latent_frames = FIRST_LATENTS if chunk == 0 else LATENTS_PER_CHUNK
                offset = 0 if chunk == 0 else 4 + 2 * chunk
                height, width = window[0].shape[:2]
                if local_mask is None:
                    rows, cols = height // (16 * WINDOW[1]), width // (16 * WINDOW[2])
                    local_mask = local_window_mask(rows, cols, self.sparsity.local_range, model.device)
                    topk = self.sparsity.topk(rows * cols, height, width)
                    shape = (1, model.config.dit.in_dim, height // 8, width // 8)
                    noise = ChunkNoise(self.noise_draw, seed, shape, plan.padded, model.device, model.dtype)
                start = noise.chunk(chunk, latent_frames)
                velocity = model.dit.forward_chunk(
                    start, features, offset, cache, topk, local_mask, attention=speed.attention
                )
                latents = start - velocity
                cond_start = 0 if chunk == 0 else 8 * chunk + 13
                cond_stop = FIRST_OUTPUT if chunk == 0 else 8 * chunk + 21
                cond = self._to_tensor([window[i - window_start] for i in range(cond_start, cond_stop)])
                submitted = decoding.submit(latents, cond)
                while window_start < cond_stop:
                    window.popleft()
                    window_start += 1
                self.last_kv_cache_bytes = cache.nbytes()
                # overlapping: this chunk's frames are collected after the next chunk is queued
                ready, pending = (pending, submitted) if decoding.overlap else (submitted, None)
                if ready is not None:
                    out = decoding.finish(ready)[: max(0, frame_count - emitted)]
                    emitted += len(out)
                    if on_chunk is not None:
                        on_chunk(chunk + (0 if pending is not None else 1), plan.chunks)
                    if len(out):
                        yield out
            if pending is not None:
                out = decoding.finish(pending)[: max(0, frame_count - emitted)]
                if on_chunk is not None:
                    on_chunk(plan.chunks, plan.chunks)
                if len(out):
                    yield out
        finally:
            cache.clear()

    def _project(
        self, window: deque[np.ndarray], window_start: int, clips: list[tuple[int, int]]
    ) -> list[torch.Tensor]:
        """LQ projection features of ``clips`` (frame ranges), concatenated along tokens per layer."""
        features: list[torch.Tensor] | None = None
        for start, stop in clips:
            clip = self._to_tensor([window[i - window_start] for i in range(start, stop)])
            current = self.model.lq_projection.stream(clip)
            if current is None:
                continue
            features = (
                current
                if features is None
                else [torch.cat([a, b], 1) for a, b in zip(features, current, strict=True)]
            )
        assert features is not None
        return features
