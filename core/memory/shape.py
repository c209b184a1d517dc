"""The memory estimate's view of a model: its DiT and VAE shape and exact parameter counts, from its card."""

from __future__ import annotations

from dataclasses import dataclass

from core.validation import ConfigError
from weights.registry import ModelCard


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about one model; parameter counts in billions (``dit_params`` and
    ``wide_params``, the ones fp8 storage leaves in the compute dtype, per expert)."""

    dim: int
    ffn_dim: int
    layers: int
    dit_params: float
    experts: int = 1
    wide_params: float = 0.0
    text_encoder_params: float = 0.0
    vae_params: float = 0.0
    image_encoder_params: float = 0.0
    """The CLIP image encoder of Wan2.1 image to video; placed with the text encoder by the level."""
    vae_stride: tuple[int, int, int] = (4, 8, 8)
    patch: tuple[int, int, int] = (1, 2, 2)
    prefetch_blocks: int = 2
    nonblock_fraction: float = 0.02

    def tokens(self, width: int, height: int, frames: int) -> int:
        """Tokens the DiT sees for a ``frames`` x ``height`` x ``width`` video."""
        (st, sh, sw), (pt, ph, pw) = self.vae_stride, self.patch
        latent_frames = (frames - 1) // st + 1
        return (latent_frames // pt) * (height // sh // ph) * (width // sw // pw)


def card_shape(card: ModelCard, offload: dict[str, float]) -> ModelShape:
    """The estimate's view of ``card``'s arch facts; a clear error when it has no parameter counts."""
    arch = card.architecture()
    if arch.params is None:
        raise ConfigError(f"{card.name} has no parameter counts (arch.params) for the memory estimate")
    return ModelShape(
        dim=arch.dim,
        ffn_dim=arch.ffn_dim,
        layers=arch.layers,
        dit_params=arch.params.dit,
        experts=arch.experts,
        wide_params=arch.params.wide,
        text_encoder_params=arch.params.text_encoder,
        vae_params=arch.params.vae,
        image_encoder_params=arch.params.image_encoder,
        vae_stride=arch.vae_stride,
        patch=arch.patch,
        prefetch_blocks=int(offload["prefetch_blocks"]),
        nonblock_fraction=float(offload["nonblock_fraction"]),
    )
