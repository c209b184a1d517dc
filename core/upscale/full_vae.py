"""The "Full" variant's decoder: the Wan2.1 VAE (``Wan2.1_VAE.pth``, original key layout) in diffusers.

The original-format weights are renamed with diffusers' own single-file converter and loaded into
``AutoencoderKLWan``. Decoding streams chunk by chunk through the VAE's causal feature cache, which is
what its whole-video decode does frame by frame, so chunked output equals decoding everything at once.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

_RESIDUAL = (
    "residual.0.gamma",
    "residual.2.weight",
    "residual.2.bias",
    "residual.3.gamma",
    "residual.6.weight",
    "residual.6.bias",
)
_BLOCK_PARTS = (
    *_RESIDUAL,
    "shortcut.weight",
    "shortcut.bias",
    "resample.1.weight",
    "resample.1.bias",
    "time_conv.weight",
    "time_conv.bias",
)
_ATTENTION = ("norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias")


def _original_key_candidates(max_blocks: int = 32) -> list[str]:
    keys = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    for part, blocks in (("encoder", "downsamples"), ("decoder", "upsamples")):
        keys += [
            f"{part}.conv1.weight",
            f"{part}.conv1.bias",
            f"{part}.head.0.gamma",
            f"{part}.head.2.weight",
            f"{part}.head.2.bias",
        ]
        keys += [f"{part}.middle.{i}.{name}" for i in (0, 2) for name in _RESIDUAL]
        keys += [f"{part}.middle.1.{name}" for name in _ATTENTION]
        keys += [f"{part}.{blocks}.{i}.{name}" for i in range(max_blocks) for name in _BLOCK_PARTS]
    return keys


def convert_original_vae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan2.1 VAE keys -> ``AutoencoderKLWan`` keys (diffusers' converter)."""
    return convert_wan_vae_to_diffusers(state)


def original_key_names(vae: AutoencoderKLWan) -> dict[str, str]:
    """diffusers key -> original key for every parameter of ``vae`` (to save it in the original layout)."""
    wanted = set(vae.state_dict())
    candidates = _original_key_candidates()
    converted = convert_wan_vae_to_diffusers({key: key for key in candidates})
    inverse = {new: old for new, old in converted.items() if new in wanted}
    missing = sorted(wanted - set(inverse))
    if missing:
        raise KeyError(f"no original-layout name for VAE parameters: {missing[:5]}")
    return inverse


def build_vae(config: dict[str, Any]) -> AutoencoderKLWan:
    """An ``AutoencoderKLWan`` with ``config`` overriding the Wan2.1 defaults."""
    return AutoencoderKLWan(**config)


class StreamingVAEDecoder:
    """Decode latent chunks in order with the VAE's causal cache kept between chunks."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = vae
        config = vae.config
        self._mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
        self.reset()

    def reset(self) -> None:
        self.vae.clear_cache()
        self._first = True

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (1, 16, f, h, w) -> RGB (1, 3, T, 8h, 8w) in [-1, 1]; T = 4f (4f-3 at first)."""
        vae = self.vae
        dtype = vae.post_quant_conv.weight.dtype
        z = latents.to(dtype) * self._std.to(latents.device, dtype) + self._mean.to(latents.device, dtype)
        x = vae.post_quant_conv(z)
        frames = []
        for index in range(x.shape[2]):
            vae._conv_idx = [0]
            frames.append(
                vae.decoder(
                    x[:, :, index : index + 1],
                    feat_cache=vae._feat_map,
                    feat_idx=vae._conv_idx,
                    first_chunk=self._first,
                )
            )
            self._first = False
        return torch.cat(frames, dim=2).clamp(-1.0, 1.0)
