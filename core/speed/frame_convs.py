"""The Wan VAE decoder's causal 3-D convolutions run as 2-D convolutions over frames.

A causal ``k_t x k_h x k_w`` convolution's output frame ``t`` is the sum over ``k`` of a 2-D convolution of
input frame ``t + k`` (after the causal padding) with the weight's time slice ``k``. Stacking each output
frame's ``k_t`` input frames along the channels turns that sum into ONE 2-D convolution with
``k_t * C_in`` input channels, batched over the frames: the same products and sums in another order, run by
cuDNN's 2-D kernels, which are faster than its 3-D ones at these shapes (``bench/wan_vae_speed.py``).
Frames are taken as a view of the channels-last-3-D activation (``(1, C, T, H, W)`` with channels last is
``(T, C, H, W)`` channels-last), so only the stacking copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
from torch import nn

MODES = ("stack", "sum")


class FrameConv(nn.Module):
    """``conv`` (a :class:`WanCausalConv3d` of stride 1) as 2-D convolutions over frames, same call
    signature (``forward(x, cache_x=None)``), same maths.

    ``mode``: ``stack`` one 2-D convolution over the frames stacked along the channels; ``sum`` one 2-D
    convolution per time tap, summed (no stacking copy, ``k_t`` smaller convolutions)."""

    def __init__(self, conv: WanCausalConv3d, mode: str = "stack") -> None:
        super().__init__()
        if not _over_frames(conv):
            raise ValueError("only stride-1, undilated, ungrouped causal convolutions run over frames")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        out_channels, in_channels, taps, kh, kw = conv.weight.shape
        self.mode, self.taps = mode, taps
        self.time_padding = conv._padding[4]
        self.padding = (conv._padding[2], conv._padding[0])
        weight = conv.weight.detach()
        if mode == "stack":  # one weight, input channels ordered (tap, channel) as the frames are stacked
            parts = [weight.permute(0, 2, 1, 3, 4).reshape(out_channels, taps * in_channels, kh, kw)]
        else:  # one weight per tap
            parts = list(weight.unbind(2))
        self.weights = nn.ParameterList([_frozen(part) for part in parts])
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
        pad = self.time_padding
        if cache_x is not None and pad > 0:
            x = torch.cat([cache_x.to(x.device), x], dim=2)
            pad -= cache_x.shape[2]
        if pad > 0:
            x = F.pad(x, (0, 0, 0, 0, pad, 0))
        batch, channels, padded, height, width = x.shape
        frames_out = padded - self.taps + 1
        frames = x.permute(0, 2, 1, 3, 4)  # (B, T, C, H, W): a view, each frame channels-last

        def taps(k: int) -> torch.Tensor:  # the frames tap k sees, (B * T_out, C, H, W)
            return frames[:, k : k + frames_out].reshape(batch * frames_out, channels, height, width)

        if self.mode == "stack":
            stacked = torch.cat([taps(k) for k in range(self.taps)], dim=1) if self.taps > 1 else taps(0)
            out = F.conv2d(stacked, self.weights[0], self.bias, padding=self.padding)
        else:
            out = F.conv2d(taps(0), self.weights[0], self.bias, padding=self.padding)
            for k in range(1, self.taps):
                out = out.add_(F.conv2d(taps(k), self.weights[k], padding=self.padding))
        return out.view(batch, frames_out, *out.shape[1:]).permute(0, 2, 1, 3, 4)


def _over_frames(conv: WanCausalConv3d) -> bool:
    return tuple(conv.stride) == tuple(conv.dilation) == (1, 1, 1) and conv.groups == 1


def _frozen(weight: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(weight.contiguous(memory_format=torch.channels_last), requires_grad=False)


def frame_convs(decoder: nn.Module, mode: str = "stack") -> None:
    """Replace every stride-1 (undilated, ungrouped) :class:`WanCausalConv3d` in ``decoder`` by a
    :class:`FrameConv`, in place."""
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WanCausalConv3d) and _over_frames(child):
                setattr(parent, name, FrameConv(child, mode))
