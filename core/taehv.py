"""A tiny video decoder for Wan latents: the decoder half of TAEHV (Tiny AutoEncoder for Hunyuan Video).

Our implementation of the architecture published in ``taehv.py`` of github.com/madebyollin/taehv (the
decoder only; its base variant, not "super"). It loads the authors' ``taew2_1.pth`` (Wan 2.1 VAE: 16
latent channels, 8x space / 4x time) and ``taew2_2.pth`` (Wan 2.2 TI2V-5B VAE: 48 channels, decoded
through a 2x2 pixel shuffle, so 16x space) by their own state-dict keys (``decoder.<index>...``; the
encoder's keys are ignored), and any file of the same layout with other widths (the tiny test decoders).

The authors' facts it keeps:

- It decodes the latents the diffusion model denoises as they are (no ``latents_mean`` / ``latents_std``
  to undo), ``(B, C, T, h, w)`` here (diffusers' order), and gives RGB in [0, 1].
- Layout: ``Clamp`` (``3 tanh(x / 3)``), conv to 256, three stages of three ``MemBlock`` then 2x nearest
  upsampling, a ``TGrow`` and a conv (widths 256 -> 128 -> 64 -> 64), ReLU and a conv to RGB (times the
  pixel shuffle's patch). A ``MemBlock`` sees its input and the previous frame's input (zeros first).
- Time: the second and third ``TGrow`` double the frames, so T latent frames give 4T frames of which the
  first 3 are dropped: 4(T - 1) + 1, as Wan's VAE. Without time upscaling (``time_upscale=False``, the
  authors' cheaper preview setting) each ``TGrow`` keeps its last time step's channels and T latent frames
  give T frames.
- Space upscaling may be turned off per stage (the authors' ``decoder_space_upscale``) for a cheaper,
  smaller preview.

Frames are decoded one after another with each block's memory carried (the authors' sequential order), so
the memory used does not grow with the number of frames.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.validation import ConfigError

MEM_BLOCKS = ((3, 4, 5), (9, 10, 11), (15, 16, 17))
"""The decoder's ``MemBlock`` indices, three per stage."""
UPSAMPLES = (6, 12, 18)
TGROWS = (7, 13, 19)
STAGE_CONVS = (1, 8, 14, 20)
"""The conv into each stage's width (index 1) and the convs after each stage's ``TGrow``."""
OUT_CONV = 22
DECODER_LENGTH = 23
TIME_STRIDES = (1, 2, 2)
"""Frames each ``TGrow`` makes of one (the authors' ``decoder_time_upscale=(False, True, True)``)."""


def conv3(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Residual block over the frame and the previous frame's input, concatenated on channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv3(width * 2, width), nn.ReLU(), conv3(width, width), nn.ReLU(), conv3(width, width)
        )
        self.skip = nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """A 1x1 conv making ``stride`` frames of one: channel group k of its output is frame k."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(width, width * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.conv(x).chunk(self.stride, dim=1)


def decoder_shape(state: dict[str, torch.Tensor]) -> tuple[int, tuple[int, int, int, int], int]:
    """Latent channels, the four widths and the pixel-shuffle patch of a TAEHV state dict's decoder."""
    try:
        latent_channels = int(state["decoder.1.weight"].shape[1])
        widths = tuple(int(state[f"decoder.{i}.weight"].shape[0]) for i in STAGE_CONVS)
        out_channels = int(state[f"decoder.{OUT_CONV}.weight"].shape[0])
    except KeyError as missing:
        raise ConfigError(f"not a TAEHV decoder state dict: no {missing} key") from None
    patch = round((out_channels / 3) ** 0.5)
    if 3 * patch * patch != out_channels:
        raise ConfigError(f"TAEHV decoder: {out_channels} output channels is not 3 x a square patch")
    return latent_channels, widths, patch  # type: ignore[return-value]


class TinyVideoDecoder(nn.Module):
    """TAEHV's decoder (see the module docstring); build it with :meth:`from_state_dict` or :meth:`load`."""

    def __init__(
        self,
        latent_channels: int,
        widths: tuple[int, int, int, int] = (256, 128, 64, 64),
        patch: int = 1,
        time_upscale: bool = True,
        space_upscale: tuple[bool, bool, bool] = (True, True, True),
    ) -> None:
        super().__init__()
        self.latent_channels, self.patch = latent_channels, patch
        strides = TIME_STRIDES if time_upscale else (1, 1, 1)
        layers: list[nn.Module] = [Clamp(), conv3(latent_channels, widths[0]), nn.ReLU()]
        for stage in range(3):
            width = widths[stage]
            layers += [MemBlock(width) for _ in range(3)]
            layers.append(nn.Upsample(scale_factor=2 if space_upscale[stage] else 1))
            layers.append(TGrow(width, strides[stage]))
            layers.append(conv3(width, widths[stage + 1], bias=False))
        layers += [nn.ReLU(), conv3(widths[3], 3 * patch * patch)]
        self.decoder = nn.Sequential(*layers)
        self.frames_to_trim = strides[1] * strides[2] - 1

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, torch.Tensor],
        time_upscale: bool = True,
        space_upscale: tuple[bool, bool, bool] = (True, True, True),
    ) -> TinyVideoDecoder:
        """A decoder with the authors' weights: its ``decoder.*`` keys, unchanged; a ``TGrow`` with more
        frames in the file than here keeps the last frame's channels (the authors' ``patch_tgrow_layers``)."""
        latent_channels, widths, patch = decoder_shape(state)
        model = cls(latent_channels, widths, patch, time_upscale, space_upscale)
        own = model.state_dict()
        weights = {k: v for k, v in state.items() if k.startswith("decoder.")}
        for index in TGROWS:
            key = f"decoder.{index}.conv.weight"
            if key in weights and weights[key].shape[0] > own[key].shape[0]:
                weights[key] = weights[key][-own[key].shape[0] :]
        try:
            model.load_state_dict(weights)
        except RuntimeError as error:
            raise ConfigError(f"TAEHV decoder weights do not fit: {str(error).splitlines()[0]}") from None
        return model.eval().requires_grad_(False)

    @classmethod
    def load(cls, path: Path, **options: object) -> TinyVideoDecoder:
        """The decoder in the authors' ``.pth`` (or ``.safetensors``) file at ``path``."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        return cls.from_state_dict(state, **options)  # type: ignore[arg-type]

    def _frames(self, x: torch.Tensor, start: int, memory: list, out: list[torch.Tensor]) -> None:
        """Run blocks ``start``.. on one frame ``x`` (B, C, H, W), appending the frames it becomes."""
        for index in range(start, len(self.decoder)):
            block = self.decoder[index]
            if isinstance(block, MemBlock):
                past = memory[index] if memory[index] is not None else torch.zeros_like(x)
                memory[index] = x
                x = block(x, past)
            elif isinstance(block, TGrow):
                for frame in block(x):
                    self._frames(frame, index + 1, memory, out)
                return
            else:
                x = block(x)
        out.append(x)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], (B, 3, F, H, W), of latents (B, C, T, h, w) in the model's own scale."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ConfigError(
                f"the tiny decoder takes (batch, {self.latent_channels}, frames, height, width) latents, "
                f"got {tuple(latents.shape)}"
            )
        weight = self.decoder[1].weight
        x = latents.to(weight.device, weight.dtype)
        memory: list = [None] * len(self.decoder)
        out: list[torch.Tensor] = []
        for t in range(x.shape[2]):
            self._frames(x[:, :, t], 0, memory, out)
        frames = torch.stack(out[self.frames_to_trim :], dim=2)
        if self.patch > 1:
            frames = F.pixel_shuffle(frames.transpose(1, 2), self.patch).transpose(1, 2)
        return frames.clamp(0, 1)
