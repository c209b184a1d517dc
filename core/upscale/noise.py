"""The starting noise of each FlashVSR chunk, drawn one of two ways.

* ``official``: as the official pipeline, one bf16 ``torch.randn`` for the whole video (``(padded - 1) // 4``
  latent frames) from a generator on the model's device seeded with the seed; chunk 0 takes latent frames
  0-5, chunk i > 0 frames 4 + 2i and 5 + 2i. On CUDA a seed then gives the official noise (when the padded
  length is the official one too). The tensor is kept on the host and each chunk's slice moved over.
* ``per-chunk``: each chunk draws its own float32 noise from a CPU generator; identical on every device,
  and nothing is held for the whole video.
"""

from __future__ import annotations

import torch

from core.validation import as_choice

NOISE_DRAWS = ("official", "per-chunk")


def default_noise_draw(device: torch.device) -> str:
    """The official draw on CUDA, the deterministic per-chunk draw elsewhere."""
    return "official" if device.type == "cuda" else "per-chunk"


def latent_slice(chunk: int) -> slice:
    """The latent frames of the whole-video noise that ``chunk`` denoises (official schedule)."""
    return slice(0, 6) if chunk == 0 else slice(4 + 2 * chunk, 6 + 2 * chunk)


class ChunkNoise:
    """Noise for each chunk of one run, on ``device`` in ``dtype``."""

    def __init__(
        self,
        draw: str,
        seed: int,
        shape: tuple[int, int, int, int],
        padded_frames: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        """``shape`` is (batch, channels, latent height, latent width); ``padded_frames`` the 8n+1 frames
        the schedule reads."""
        self.draw = as_choice("noise draw", draw, NOISE_DRAWS)
        self.shape, self.device, self.dtype = shape, device, dtype
        self.whole: torch.Tensor | None = None
        if self.draw == "official":
            batch, channels, height, width = shape
            generator = torch.Generator(device).manual_seed(seed)
            size = (batch, channels, (padded_frames - 1) // 4, height, width)
            self.whole = torch.randn(size, generator=generator, device=device, dtype=torch.bfloat16).cpu()
        else:
            self.generator = torch.Generator("cpu").manual_seed(seed)

    def chunk(self, index: int, latent_frames: int) -> torch.Tensor:
        """The noise of chunk ``index`` (``latent_frames`` latent frames); chunks are asked in order."""
        if self.whole is not None:
            noise = self.whole[:, :, latent_slice(index)]
        else:
            batch, channels, height, width = self.shape
            noise = torch.randn((batch, channels, latent_frames, height, width), generator=self.generator)
        if noise.shape[2] != latent_frames:
            raise ValueError(f"chunk {index} needs {latent_frames} latent frames, got {noise.shape[2]}")
        return noise.to(self.device, self.dtype)
