"""RIFE frame interpolation: our implementation of Practical-RIFE's IFNet (hzwer, v4.25 / v4.26 layout).

The authors' facts it keeps (``train_log/IFNet_HDv3.py`` and ``RIFE_HDv3.py`` of their v4.26 release, as
also transcribed in HolyWu/vs-rife ``IFNet_HDv3_v4_26.py``):

- Keys: ``encode.cnn0..3`` (the feature head: three 3x3 convs, the first with stride 2, and a 4x4
  transposed conv back to full size, LeakyReLU 0.2 between), ``block0..4`` (``IFBlock``: ``conv0`` two
  stride-2 convs, ``convblock`` eight ``ResConv`` with a learnt per-channel ``beta``, ``lastconv`` a 4x4
  transposed conv to 4 x 13 channels and a 2x pixel shuffle). Their ``flownet.pkl`` is saved from
  DataParallel: its keys start with ``module.``, dropped on load as their ``load_model`` does.
- Each block works at 1/16, 1/8, 1/4, 1/2, 1 of the frame, refining a 4-channel flow (to each frame), a
  blend mask and 8 feature channels; both frames are warped along the flow (bilinear ``grid_sample``,
  border padding) and blended by the mask's sigmoid.
- Frames are RGB in [0, 1], padded with zeros at the right and bottom to a multiple of 128 (their
  ``inference_video.py``), and the middle frame is timestep 0.5.

The widths are read from the state dict, so v4.25, v4.26 and the narrow random test models all load.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.validation import ConfigError

BLOCKS = 5
SCALES = (16, 8, 4, 2, 1)
"""The fraction of the frame each block works at (1/16 .. 1)."""
PAD = 128
BLOCK_OUT = 13
"""Each block's output channels: flow 4, mask 1, features 8."""


def _conv(n_in: int, n_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, stride, 1), nn.LeakyReLU(0.2))


class Head(nn.Module):
    """The feature head run on each frame."""

    def __init__(self, width: int, features: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, width, 3, 2, 1)
        self.cnn1 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn2 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(width, features, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.cnn0(x), 0.2)
        x = F.leaky_relu(self.cnn1(x), 0.2)
        x = F.leaky_relu(self.cnn2(x), 0.2)
        return self.cnn3(x)


class ResConv(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)


class IFBlock(nn.Module):
    """One refinement step at ``1 / scale`` of the frame."""

    def __init__(self, n_in: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(n_in, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * BLOCK_OUT, 4, 2, 1), nn.PixelShuffle(2))

    def forward(
        self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` sampled at each pixel plus ``flow`` (x, y in pixels), borders repeated; in float32 (a
    half-precision grid is off by up to a pixel on wide frames), returned in ``image``'s dtype."""
    dtype, image, flow = image.dtype, image.float(), flow.float()
    _, _, height, width = flow.shape
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, 1, width).expand(-1, -1, height, -1)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, 1, height, 1).expand(-1, -1, -1, width)
    grid = torch.cat((xs, ys), 1) + torch.cat(
        (flow[:, :1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)), 1
    )
    grid = grid.permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True).to(dtype)


class IFNet(nn.Module):
    """Practical-RIFE's flow network (see the module docstring); build it with :meth:`from_state_dict`."""

    def __init__(self, head_width: int, features: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.encode = Head(head_width, features)
        first = 6 + 2 * features + 1
        later = 6 + 2 * features + 1 + 1 + (BLOCK_OUT - 5) + 4
        for index, width in enumerate(widths):
            self.add_module(f"block{index}", IFBlock(first if index == 0 else later, width))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> IFNet:
        """The network with the authors' weights (``module.`` prefixes dropped), every key matched."""
        state = {key.removeprefix("module."): value for key, value in state.items()}
        try:
            head_width = int(state["encode.cnn0.weight"].shape[0])
            features = int(state["encode.cnn3.weight"].shape[1])
            widths = tuple(int(state[f"block{i}.conv0.1.0.weight"].shape[0]) for i in range(BLOCKS))
        except KeyError as missing:
            raise ConfigError(
                f"not a RIFE v4.25/v4.26 flow network (flownet.pkl): no {missing} key"
            ) from None
        model = cls(head_width, features, widths)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ConfigError(f"RIFE weights do not fit: {str(error).splitlines()[0]}") from None
        return model.eval().requires_grad_(False)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float = 0.5) -> torch.Tensor:
        """The frame at ``timestep`` between two (B, 3, H, W) frames in [0, 1], H and W multiples of 32."""
        t = torch.full_like(img0[:, :1], timestep)
        f0, f1 = self.encode(img0), self.encode(img1)
        warped0, warped1 = img0, img1
        flow = mask = feat = None
        for index, scale in enumerate(SCALES):
            block = getattr(self, f"block{index}")
            if flow is None:
                flow, mask, feat = block(torch.cat((img0, img1, f0, f1, t), 1), None, scale)
            else:
                wf0, wf1 = warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])
                inputs = torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1)
                delta, mask, feat = block(inputs, flow, scale)
                flow = flow + delta
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


def read_flownet(path: Path, member: str = "flownet.pkl") -> dict[str, torch.Tensor]:
    """The state dict in ``path``: a ``flownet.pkl``, or the ``.zip`` member whose name ends with ``member``
    (a torch file is itself a zip, so the suffix tells them apart)."""
    if path.suffix != ".zip":
        return torch.load(path, map_location="cpu", weights_only=True)
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith(member)]
        if not names:
            raise ConfigError(f"{path.name} holds no {member}; delete it to fetch it again")
        data = archive.read(min(names, key=len))
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class RifeInterpolator:
    """The ``rife`` method: the middle frame through IFNet on ``device`` (fp16 on a GPU)."""

    name = "rife"

    def __init__(self, model: IFNet, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.model = model.to(device, self.dtype)

    @classmethod
    def load(cls, path: Path, device: torch.device, member: str = "flownet.pkl") -> RifeInterpolator:
        """The authors' ``flownet.pkl`` at ``path``, or inside their release zip at ``path``."""
        return cls(IFNet.from_state_dict(read_flownet(Path(path), member)), device)

    def _tensor(self, frame: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].to(self.dtype) / 255.0
        height, width = frame.shape[:2]
        return F.pad(x, (0, -width % PAD, 0, -height % PAD))

    @torch.no_grad()
    def middle(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        height, width = first.shape[:2]
        out = self.model(self._tensor(first), self._tensor(second))[0, :, :height, :width]
        return out.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
