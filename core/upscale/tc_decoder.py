"""Tiny Conditional Decoder (``TCDecoder.ckpt``): a TAEHV-style decoder that also sees the LQ frames.

Input per latent frame: the 16 latent channels after 768 channels of the LQ frames pixel-shuffled
4 (time) x 8 x 8. Three stages of memory blocks (each also sees its own input one frame earlier),
2x spatial upsampling and temporal growth (1, 2, 2) give 4 RGB frames per latent frame at 8x the size.
Every ReLU at the top level is followed by a 3x3 conv + ReLU ("identity deepening"), which fixes the
``decoder.N`` indices of the checkpoint. The first decoded call drops 3 warm-up frames.

Frames are run layer by layer over a group of latent frames, with each memory block's last input kept
for the next group: the same result as the official frame-by-frame executor, with fewer launches.
"""

from __future__ import annotations

import torch
from torch import nn

from core.upscale.config import TCDecoderConfig

COND_TIME, COND_SPACE = 4, 8


def conv3x3(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv3x3(n_in * 2, n_out), nn.ReLU(), conv3x3(n_out, n_out), nn.ReLU(), conv3x3(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """Temporal growth: one frame of C channels becomes ``stride`` frames."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, channels, h, w = x.shape
        return self.conv(x).reshape(frames * self.stride, channels, h, w)


def build_layers(config: TCDecoderConfig) -> nn.Sequential:
    """The decoder's layer list in checkpoint order, deepening included."""
    c = config.channels
    base: list[nn.Module] = [Clamp(), conv3x3(config.latent_channels, c[0]), nn.ReLU()]
    time_strides = (1, 2, 2)
    for stage in range(3):
        base += [MemBlock(c[stage], c[stage]) for _ in range(3)]
        base += [
            nn.Upsample(scale_factor=2),
            TGrow(c[stage], time_strides[stage]),
            conv3x3(c[stage], c[stage + 1], bias=False),
        ]
    base += [nn.ReLU(), conv3x3(c[3], 3)]
    layers: list[nn.Module] = []
    for position, layer in enumerate(base):
        layers.append(layer)
        if isinstance(layer, nn.ReLU):
            width = base[position - 1].out_channels
            deepen = conv3x3(width, width, bias=False)
            nn.init.dirac_(deepen.weight)
            layers += [deepen, nn.ReLU()]
    return nn.Sequential(*layers)


def deepening_keys(layers: nn.Sequential) -> set[str]:
    """Names of the identity-initialised deepening convs (the official loader tolerates them missing)."""
    return {
        f"{index}.weight"
        for index in range(1, len(layers) - 1)
        if isinstance(layers[index - 1], nn.ReLU) and isinstance(layers[index + 1], nn.ReLU)
    }


def pixel_unshuffle_cond(frames: torch.Tensor) -> torch.Tensor:
    """LQ frames (1, 3, T, H, W) -> (1, ceil(T/4), 768, H/8, W/8); T is padded with the first frame."""
    b, c, t, h, w = frames.shape
    if t % COND_TIME:
        pad = frames[:, :, :1].expand(-1, -1, COND_TIME - t % COND_TIME, -1, -1)
        frames = torch.cat([pad, frames], dim=2)
        t = frames.shape[2]
    s = COND_SPACE
    x = frames.reshape(b, c, t // COND_TIME, COND_TIME, h // s, s, w // s, s)
    x = x.permute(0, 2, 1, 3, 5, 7, 4, 6)
    return x.reshape(b, t // COND_TIME, c * COND_TIME * s * s, h // s, w // s)


class TinyConditionalDecoder(nn.Module):
    """Streaming decoder; :meth:`reset` per video, :meth:`decode` per chunk of latents."""

    FRAMES_TO_TRIM = 3

    def __init__(self, config: TCDecoderConfig, latent_frames_per_group: int = 1) -> None:
        super().__init__()
        self.config = config
        self.decoder = build_layers(config)
        self.latent_frames_per_group = latent_frames_per_group
        self.reset()

    def reset(self) -> None:
        self._memory: dict[int, torch.Tensor] = {}
        self._started = False

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Latents (1, 16, f, h, w) and their LQ frames (1, 3, T, 8h, 8w) -> RGB (1, 3, 4f or 4f-3, 8h, 8w)
        in [-1, 1] (unclamped)."""
        x = torch.cat([pixel_unshuffle_cond(cond.to(latents.dtype)), latents.transpose(1, 2)], dim=2)[0]
        outputs = [self._run(group) for group in x.split(self.latent_frames_per_group)]
        frames = torch.cat(outputs)
        if not self._started:
            frames = frames[self.FRAMES_TO_TRIM :]
            self._started = True
        return frames.transpose(0, 1).unsqueeze(0).mul(2).sub(1)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.decoder):
            if isinstance(layer, MemBlock):
                previous = self._memory.get(index)
                first = torch.zeros_like(x[:1]) if previous is None else previous
                past = torch.cat([first, x[:-1]])
                self._memory[index] = x[-1:].clone()
                x = layer(x, past)
            else:
                x = layer(x)
        return x
