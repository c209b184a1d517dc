"""A live preview while a Wan-family pipeline denoises: every few steps, the latents turned into RGB
without the VAE and written as a small playable mp4 shown through :meth:`core.jobs.Job.show_preview`.

When the model's tiny decoder (TAEHV) is at hand the latents are decoded through it
(:mod:`core.preview_decoder`); otherwise, or if it fails, they are projected linearly.

The projection is a linear map per latent channel: Wan 2.1's VAE latent -> RGB factors and bias as
published in ComfyUI's ``comfy/latent_formats.py`` (``Wan21``), for the normalised latents the diffusers
pipelines denoise; a latent space of another width (Wan 2.2 5B's 48 channels, tiny test models) shows the
channels' mean as grey. One latent frame stands for four video frames, so the preview plays at a quarter
of the model's fps. It reads the latents only: the run's frames are the same with or without it (and with
either way of making it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.jobs import Job
from core.magi.stream import PREVIEW_DIR, PREVIEW_ENCODER, sweep_previews
from core.preview_decoder import TinyPreviewDecoder
from core.settings import Settings
from core.video_io import VideoWriter
from weights.registry import ModelCard

log = logging.getLogger(__name__)

WAN21_LATENT_RGB = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
"""Wan 2.1 VAE: each of the 16 latent channels' contribution to R, G, B (ComfyUI's published factors)."""
WAN21_LATENT_RGB_BIAS = (-0.1835, -0.0868, -0.3360)

PREVIEW_EVERY = 4
"""A preview after every this many denoising steps."""
PREVIEW_LONG_SIDE = 416
"""The preview's long side at most (latent cells are shown as square blocks of an even size)."""


@torch.no_grad()
def latent_rgb(latents: torch.Tensor) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3) of latents shaped (B, C, T, h, w) (the first batch item), each latent
    cell shown as a block, so that H and W are even."""
    x = latents[0].detach().float()
    if x.shape[0] == len(WAN21_LATENT_RGB):
        factors = torch.tensor(WAN21_LATENT_RGB, device=x.device)
        bias = torch.tensor(WAN21_LATENT_RGB_BIAS, device=x.device)
        rgb = torch.einsum("cthw,cr->thwr", x, factors) + bias
    else:
        rgb = x.mean(dim=0)[..., None].expand(*x.shape[1:], 3)
    frames = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu().numpy()
    block = max(2, min(8, PREVIEW_LONG_SIDE // max(frames.shape[1:3])) // 2 * 2)
    return frames.repeat(block, axis=1).repeat(block, axis=2)


class LatentPreview:
    """Writes ``<job id>-latent-<k>.mp4`` in ``folder`` every ``every`` steps and shows it on ``job``; the
    one before the previous is deleted as a new one comes (the page may still be fetching the previous).
    ``decoder``: the tiny decoder to make the frames with (None: the linear projection)."""

    def __init__(
        self,
        folder: Path,
        job: Job,
        fps: float,
        every: int = PREVIEW_EVERY,
        decoder: TinyPreviewDecoder | None = None,
    ) -> None:
        self.folder, self.job, self.every, self.decoder = Path(folder), job, every, decoder
        self.fps = max(1.0, fps / 4)
        self.count = 0
        sweep_previews(self.folder)

    @classmethod
    def for_run(cls, settings: Settings, job: Job, card: ModelCard) -> LatentPreview:
        """A preview in the outputs folder's previews folder, through ``card``'s tiny decoder when it is
        here or can be fetched (see :mod:`core.preview_decoder`)."""
        folder = Path(settings.outputs_dir) / PREVIEW_DIR
        return cls(folder, job, card.fps, decoder=TinyPreviewDecoder.for_card(card, settings))

    def frames(self, latents: torch.Tensor) -> np.ndarray:
        """The preview's frames: through the tiny decoder, else (or once it failed) the linear projection."""
        if self.decoder is not None:
            try:
                return self.decoder.frames(latents)
            except Exception as error:  # a preview never fails the run
                log.warning("tiny preview decoder failed, previews stay linear: %s", error)
                self.decoder = None
        return latent_rgb(latents)

    def path(self, count: int) -> Path:
        return self.folder / f"{self.job.id}-latent-{count}.mp4"

    def on_step(self, step: int, tensors: dict[str, Any]) -> None:
        """After denoising step ``step`` (from 1): a new preview when it is due and latents are given."""
        latents = tensors.get("latents")
        if step % self.every or not isinstance(latents, torch.Tensor) or latents.ndim != 5:
            return
        self.count += 1
        with VideoWriter(self.path(self.count), self.fps, encoder=PREVIEW_ENCODER) as writer:
            writer.write(self.frames(latents))
        self.job.show_preview(str(self.path(self.count)))
        self.path(self.count - 2).unlink(missing_ok=True)
