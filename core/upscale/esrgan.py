"""Real-ESRGAN networks (RRDBNet and SRVGGNetCompact) that load the published ``.pth`` files unchanged.

The published files hold the BasicSR key layout, wrapped in ``params_ema`` (RRDBNet models) or
``params`` (compact models). The architecture and its sizes are read from the keys, as spandrel does:

- RRDBNet: ``conv_first``, ``body.N.rdbK.convJ`` (N blocks, K 1-3, J 1-5), ``conv_body``, ``conv_up1``,
  ``conv_up2``, ``conv_hr``, ``conv_last``. x2 and x1 models pixel-unshuffle the input first, which shows
  as 12 or 48 input channels of ``conv_first``.
- SRVGGNetCompact: ``body.0`` (conv), ``body.1`` (PReLU), ... ``body.last`` (conv to 3 * scale^2 channels),
  then a pixel shuffle and the nearest-upsampled input added.

When spandrel imports (it needs torchvision) it loads the file instead, which also covers other
architectures; our own classes are the fallback and give the same result for these two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

StateDict = dict[str, torch.Tensor]


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier output; residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for index in range(1, 5):
            conv = nn.Conv2d(num_feat + (index - 1) * num_grow_ch, num_grow_ch, 3, 1, 1)
            setattr(self, f"conv{index}", conv)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for index in range(1, 5):
            conv = getattr(self, f"conv{index}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks inside one more residual, scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator as BasicSR builds it: two nearest x2 upsamplings; x2/x1 unshuffle the input."""

    def __init__(
        self,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        channels: int = 3,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(channels * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.unshuffle > 1:
            pad_h, pad_w = -height % self.unshuffle, -width % self.unshuffle
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
        return out[..., : height * self.scale, : width * self.scale]


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style network: convs with PReLU at input size, upsampled in the last step."""

    def __init__(self, scale: int = 4, num_feat: int = 64, num_conv: int = 16, channels: int = 3) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(channels, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, channels * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


@dataclass
class SRNetwork:
    """A loaded image super-resolution network: RGB in [0, 1], (B, 3, H, W) -> (B, 3, H*scale, W*scale)."""

    module: nn.Module
    scale: int
    arch: str
    loader: str

    def to(self, device: torch.device, dtype: torch.dtype) -> SRNetwork:
        self.module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return self


def unwrap_state_dict(checkpoint: object) -> StateDict:
    """The tensors of a Real-ESRGAN checkpoint: its ``params_ema`` or ``params`` entry, else itself."""
    if not isinstance(checkpoint, dict):
        raise ValueError("not a state dict")
    for key in ("params_ema", "params"):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def count_blocks(state: StateDict, prefix: str) -> int:
    """1 + the highest N of keys ``{prefix}.N.*``."""
    parts = [key.split(".") for key in state if key.startswith(f"{prefix}.")]
    numbers = {int(p[1]) for p in parts if p[1].isdigit()}
    return max(numbers) + 1 if numbers else 0


def build_network(state: StateDict) -> SRNetwork:
    """Our RRDBNet or SRVGGNetCompact sized from ``state``'s keys, with ``state`` loaded strictly."""
    if "conv_first.weight" in state:
        in_channels = state["conv_first.weight"].shape[1]
        scale = {3: 4, 12: 2, 48: 1}.get(in_channels)
        if scale is None:
            raise ValueError(f"RRDBNet with {in_channels} input channels is not a 3-channel x1/x2/x4 model")
        module: nn.Module = RRDBNet(
            scale=scale,
            num_feat=state["conv_first.weight"].shape[0],
            num_block=count_blocks(state, "body"),
            num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0],
        )
        arch = "RRDBNet"
    elif "body.0.weight" in state and "body.1.weight" in state:
        last = count_blocks(state, "body") - 1
        out_channels = state[f"body.{last}.weight"].shape[0]
        scale = math.isqrt(out_channels // 3)
        if scale * scale * 3 != out_channels:
            raise ValueError(f"compact model with {out_channels} output channels is not a 3-channel model")
        module = SRVGGNetCompact(
            scale=scale, num_feat=state["body.0.weight"].shape[0], num_conv=(last - 2) // 2
        )
        arch = "SRVGGNetCompact"
    else:
        raise ValueError("not a Real-ESRGAN RRDBNet or SRVGGNetCompact state dict")
    module.load_state_dict(state, strict=True)
    return SRNetwork(module, scale, arch, "builtin")


def load_with_spandrel(state: StateDict) -> SRNetwork | None:
    """``state`` loaded by spandrel, or None when spandrel (which needs torchvision) does not import."""
    try:
        from spandrel import ModelLoader
    except ImportError:
        return None
    descriptor = ModelLoader().load_from_state_dict(state)
    return SRNetwork(descriptor.model, descriptor.scale, type(descriptor.model).__name__, "spandrel")


def load_network(path: Path, use_spandrel: bool = True) -> SRNetwork:
    """The network in a Real-ESRGAN ``.pth`` (or ``.safetensors``) file, in float32 on the CPU."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    loaded = load_with_spandrel(state) if use_spandrel else None
    return loaded or build_network(state)
