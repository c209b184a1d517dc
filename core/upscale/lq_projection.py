"""The causal LQ projection of FlashVSR v1.1 (``LQ_proj_in.ckpt``): low-quality frames to DiT features.

Frames (already upscaled to the output size, in [-1, 1]) are pixel-shuffled 16x16 onto the DiT's token
grid, then two causal 3D convolutions (kernel 4x3x3, time stride 2 each) turn every 4 frames into one
latent frame; a linear layer per fed DiT block maps the features to the DiT width. Streaming keeps the
last two input frames of each convolution, so chunks give the same result as the whole video.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.upscale.config import LQProjectionConfig

CACHE_FRAMES = 2


class ChannelRMSNorm(nn.Module):
    """Wan's RMS norm over channels of (B, C, T, H, W), parameter ``gamma`` shaped (C, 1, 1, 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class CausalConv3d(nn.Conv3d):
    """3D conv padded only towards the past in time (replicate), with the previous chunk's frames as past."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, (4, 3, 3), stride=(2, 1, 1), padding=0)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        time_pad = 2
        if past is not None:
            x = torch.cat([past.to(x.device), x], dim=2)
            time_pad -= past.shape[2]
        return super().forward(F.pad(x, (1, 1, 1, 1, time_pad, 0), mode="replicate"))


def pixel_unshuffle_3d(video: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C*patch*patch, T, H/patch, W/patch), channel order (c, row, col)."""
    b, c, t, h, w = video.shape
    x = video.view(b, c, t, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * patch * patch, t, h // patch, w // patch)


class CausalLQProjection(nn.Module):
    """Streaming LQ projection; call :meth:`reset` per video, then :meth:`stream` per clip of frames."""

    def __init__(self, config: LQProjectionConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = CausalConv3d(config.in_dim * config.patch * config.patch, config.hidden_dim1)
        self.norm1 = ChannelRMSNorm(config.hidden_dim1)
        self.conv2 = CausalConv3d(config.hidden_dim1, config.hidden_dim2)
        self.norm2 = ChannelRMSNorm(config.hidden_dim2)
        self.linear_layers = nn.ModuleList(
            nn.Linear(config.hidden_dim2, config.out_dim) for _ in range(config.layer_num)
        )
        self.reset()

    def reset(self) -> None:
        self._past1: torch.Tensor | None = None
        self._past2: torch.Tensor | None = None
        self._clips = 0

    @torch.no_grad()
    def stream(self, clip: torch.Tensor) -> list[torch.Tensor] | None:
        """Project the next clip (1, 3, T, H, W): the first clip is 1 frame and only primes the caches
        (returns None); later clips are 4 frames and give one latent frame of tokens per fed layer."""
        if self._clips == 0:
            clip = torch.cat([clip[:, :, :1].expand(-1, -1, 3, -1, -1), clip], dim=2)
        x = pixel_unshuffle_3d(clip, self.config.patch)
        past1, self._past1 = self._past1, x[:, :, -CACHE_FRAMES:].clone()
        x = F.silu(self.norm1(self.conv1(x, past1)))
        past2, self._past2 = self._past2, x[:, :, -CACHE_FRAMES:].clone()
        self._clips += 1
        if self._clips == 1:
            return None
        x = F.silu(self.norm2(self.conv2(x, past2)))
        tokens = x.flatten(2).transpose(1, 2)
        return [linear(tokens) for linear in self.linear_layers]
