"""Live previews decoded through the model's tiny decoder (TAEHV, ``core.taehv``) instead of the linear
latent -> RGB projection, when the card names one (``preview_decoder``) and its file is on this machine or
can be fetched (``weights.preview_download``).

A preview keeps one frame per latent frame (the authors' cheaper setting without time upscaling, so it
plays at a quarter of the model's fps as the linear one) and upscales space by as many of the decoder's
three 2x stages as keep its long side within :data:`PREVIEW_SIDE` (480p: 416 pixels; 720p: 640).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from core.settings import Settings
from core.taehv import TinyVideoDecoder, decoder_shape
from weights.preview_decoder import preview_decoder
from weights.preview_download import ensure_preview_decoder
from weights.registry import ModelCard

log = logging.getLogger(__name__)

PREVIEW_SIDE = 640
"""The long side of a decoded preview at most (pixels)."""


def space_stages(latent_side: int, patch: int) -> tuple[bool, bool, bool]:
    """Which of the decoder's three 2x space stages run so the long side stays within PREVIEW_SIDE."""
    stages = 3
    while stages and latent_side * patch * 2**stages > PREVIEW_SIDE:
        stages -= 1
    return tuple(stage < stages for stage in range(3))  # type: ignore[return-value]


_FAILED: set[str] = set()
"""Preview decoders that failed to fetch or load in this process: not tried again until a restart (a
broken network would otherwise cost every job its timeout)."""


class TinyPreviewDecoder:
    """One run's tiny decoder: the file's weights, built for a preview's size on the latents' device on
    first use."""

    def __init__(self, state: dict[str, torch.Tensor], name: str) -> None:
        self.state, self.name = state, name
        _, _, self.patch = decoder_shape(state)
        self.built: dict[tuple[bool, bool, bool], TinyVideoDecoder] = {}

    @classmethod
    def for_card(cls, card: ModelCard, settings: Settings) -> TinyPreviewDecoder | None:
        """The card's tiny decoder, fetched when missing; None (the linear preview) when the card names
        none, the app is offline without the file, or fetching or reading it fails (logged)."""
        if not card.preview_decoder:
            return None
        facts = preview_decoder(card.preview_decoder)
        if facts.name in _FAILED:
            return None
        try:
            path = ensure_preview_decoder(facts, settings)
            if path is None:
                return None
            return cls(torch.load(path, map_location="cpu", weights_only=True), facts.name)
        except Exception as error:  # a preview never fails the run
            _FAILED.add(facts.name)
            log.warning(
                "preview decoder %s unavailable, previews stay linear until the app restarts: %s",
                facts.name,
                error,
            )
            return None

    def decoder(self, latents: torch.Tensor) -> TinyVideoDecoder:
        """The decoder for latents of this size, on their device (fp16 on a GPU)."""
        stages = space_stages(max(latents.shape[-2:]), self.patch)
        if stages not in self.built:
            model = TinyVideoDecoder.from_state_dict(self.state, time_upscale=False, space_upscale=stages)
            dtype = torch.float16 if latents.device.type == "cuda" else torch.float32
            self.built[stages] = model.to(latents.device, dtype)
        return self.built[stages]

    @torch.no_grad()
    def frames(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 RGB frames (T, H, W, 3) of latents (B, C, T, h, w) (the first batch item), H and W even."""
        rgb = self.decoder(latents).decode(latents[:1].detach())[0]
        frames = rgb.permute(1, 2, 3, 0).float().mul(255).round().to(torch.uint8).cpu().numpy()
        height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        return frames[:, :height, :width]
