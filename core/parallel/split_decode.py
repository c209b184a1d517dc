"""The Wan VAE decode split over the ranks of a group: one band of the frame each, blended where they overlap.

Each rank decodes the whole clip (every frame, the causal cache as on one GPU) for one band of the latent
along its longer side, widened by :data:`OVERLAP` latent cells at each inner edge; the bands are
all-gathered and every rank blends them linearly across the overlaps (as diffusers' tiled decode blends its
tiles). Decoding only splits when each band stays well below the whole frame (:func:`band_plan`), else every
rank decodes it all as before. The output is not bit-equal to one whole-frame decode (the decoder's
mid-block attention sees the band, not the frame): :func:`decode_bands` is the same result in one process,
for tests and for comparison with the one-GPU decode.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.vae import DecoderOutput

from core.parallel.job_patch import patched

OVERLAP = 4
"""Latent cells each band reaches past an inner edge (32 pixels at the Wan 2.1 VAE's stride 8)."""
MAX_BAND_SHARE = 0.75
"""A split decode is skipped when a band would cover more than this share of the frame."""


@dataclass(frozen=True)
class Band:
    """Latent cells ``[start, stop)`` a rank decodes along ``axis`` (-1 width, -2 height)."""

    axis: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def band_plan(shape: tuple[int, ...], ranks: int, overlap: int = OVERLAP) -> list[Band] | None:
    """Bands over the longer side of latents ``shape`` (B, C, T, H, W) for ``ranks`` ranks; None when the
    split would not pay (a single rank, or bands wider than :data:`MAX_BAND_SHARE` of the frame)."""
    axis = -1 if shape[-1] >= shape[-2] else -2
    size = shape[axis]
    if ranks < 2 or size < ranks:
        return None
    edges = [round(size * index / ranks) for index in range(ranks + 1)]
    pairs = itertools.pairwise(edges)
    bands = [Band(axis, max(0, low - overlap), min(size, high + overlap)) for low, high in pairs]
    if max(band.size for band in bands) > MAX_BAND_SHARE * size:
        return None
    return bands


def band_slice(latents: torch.Tensor, band: Band) -> torch.Tensor:
    return latents.narrow(band.axis, band.start, band.stop - band.start)


def blend(pieces: list[torch.Tensor], bands: list[Band], latent_size: int) -> torch.Tensor:
    """The decoded ``pieces`` of ``bands`` as one video: each overlap a linear cross-fade between its two
    bands (weights sum to one everywhere)."""
    axis = bands[0].axis
    scale = pieces[0].shape[axis] // bands[0].size
    shape = list(pieces[0].shape)
    shape[axis] = latent_size * scale
    out = torch.zeros(shape, dtype=torch.float32, device=pieces[0].device)
    for index, (piece, band) in enumerate(zip(pieces, bands, strict=True)):
        weight = torch.ones(piece.shape[axis], dtype=torch.float32, device=piece.device)
        if index > 0:
            _ramp(weight, (bands[index - 1].stop - band.start) * scale, rising=True)
        if index + 1 < len(bands):
            _ramp(weight, (band.stop - bands[index + 1].start) * scale, rising=False)
        view = [1] * piece.dim()
        view[axis] = -1
        out.narrow(axis, band.start * scale, piece.shape[axis]).add_(piece.float() * weight.view(view))
    return out.to(pieces[0].dtype)


def _ramp(weight: torch.Tensor, length: int, *, rising: bool) -> None:
    """Multiply the first (``rising``) or last ``length`` entries of ``weight`` by a linear ramp."""
    ramp = (torch.arange(length, dtype=weight.dtype, device=weight.device) + 0.5) / length
    if rising:
        weight[:length] *= ramp
    else:
        weight[weight.numel() - length :] *= ramp.flip(0)


def decode_bands(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, bands: list[Band]):
    """Every band decoded and blended in this process: what the split decode gives, without a group."""
    pieces = [decode(band_slice(latents, band)) for band in bands]
    return blend(pieces, bands, latents.shape[bands[0].axis])


def gather_bands(
    decode: Callable[[torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    bands: list[Band],
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """This rank's band decoded, all bands all-gathered (padded to the widest) and blended on every rank."""
    rank = dist.get_rank(group)
    mine = decode(band_slice(latents, bands[rank]))
    axis = bands[0].axis
    scale = mine.shape[axis] // bands[rank].size
    widest = max(band.size for band in bands) * scale
    padded = mine.new_zeros(_with(mine.shape, axis, widest))
    padded.narrow(axis, 0, mine.shape[axis]).copy_(mine)
    gathered = [torch.empty_like(padded) for _ in bands]
    dist.all_gather(gathered, padded, group=group)
    pieces = [piece.narrow(axis, 0, band.size * scale) for piece, band in zip(gathered, bands, strict=True)]
    return blend(pieces, bands, latents.shape[axis])


def _with(shape: torch.Size, axis: int, size: int) -> list[int]:
    changed = list(shape)
    changed[axis] = size
    return changed


def is_wan_vae(vae: Any) -> bool:
    """Whether ``vae`` is diffusers' causal Wan VAE (a lighter decoder swapped in is left alone)."""
    return isinstance(vae, AutoencoderKLWan)


@contextlib.contextmanager
def split_decode(
    pipe: Any, group: dist.ProcessGroup | None = None, *, ranks: int | None = None
) -> Iterator[dict[str, Any]]:
    """For one job: ``pipe.vae.decode`` decodes this rank's band and returns the whole blended video on every
    rank (each rank must call it, as the pipelines of a split group do in lockstep). With ``ranks`` and no
    process group, one process decodes every band of that plan itself (:func:`decode_bands`: the split
    result, to compare with). Yields what was done, for the record, once decoded: ``bands`` (1 when the
    plan did not split), ``axis`` and ``seconds``."""
    vae = getattr(pipe, "vae", None)
    grouped = ranks is None
    if grouped:
        ranks = dist.get_world_size(group) if dist.is_initialized() else 1
    done: dict[str, Any] = {}
    if ranks < 2 or not is_wan_vae(vae):
        yield done
        return
    original = vae.decode

    def decode_whole(latents: torch.Tensor) -> torch.Tensor:
        return original(latents, return_dict=False)[0]

    def decode(latents: torch.Tensor, return_dict: bool = True) -> Any:
        started = time.perf_counter()
        bands = band_plan(tuple(latents.shape), ranks)
        if bands is None:
            video = decode_whole(latents)
        elif grouped:
            video = gather_bands(decode_whole, latents, bands, group)
        else:
            video = decode_bands(decode_whole, latents, bands)
        axis = "width" if not bands or bands[0].axis == -1 else "height"
        if video.is_cuda:
            torch.cuda.synchronize(video.device)
        done.update(bands=len(bands or [None]), axis=axis, seconds=round(time.perf_counter() - started, 3))
        return DecoderOutput(sample=video) if return_dict else (video,)

    with patched(vae, "decode", decode):
        yield done
