"""The MAGI-1 transformer VAE: 8x spatial, 4x temporal compression, 16 latent channels.

Loads the published ``ckpt/vae`` folder of ``sand-ai/MAGI-1`` (``config.json`` with ``_class_name: ViTVAE``
and its ``ddconfig``, plus ``diffusion_pytorch_model.safetensors``) with a strict key and shape match.

Frame convention (official, no "first frame as image"): ``4k`` frames encode to ``k`` latent frames and
``k`` latent frames decode to ``4k`` frames; a single frame (an image) is repeated to one 4-frame patch,
encodes to one latent frame, and one latent frame decodes back to a single frame. Latents are in the DiT's
space: ``encode`` multiplies by ``scaling_factor`` (0.18215) and ``decode`` divides, as the official
pipeline does around its VAE calls. Encoding takes the posterior mean (the official inference patch).

By default both directions tile exactly like the official pipeline (256x256-pixel tiles with 25% spatial
overlap and linear blending, 12-frame temporal tiles without overlap); ``tiled=False`` runs one pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import torch
from torch import nn

from core.magi.vae_blocks import ViTConfig, ViTDecoder, ViTEncoder
from core.validation import ConfigError, as_float, as_int, from_mapping

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
HUB_SUBFOLDER = "ckpt/vae"
SCALING_FACTOR = 0.18215
PUBLISHED_DDCONFIG = dict(
    video_size=256,
    video_length=16,
    patch_size=8,
    patch_length=4,
    in_chans=3,
    z_chans=16,
    double_z=True,
    embed_dim=1024,
    depth=24,
    num_heads=16,
    mlp_ratio=4.0,
    qkv_bias=True,
    with_cls_token=True,
    ln_in_attn=True,
    conv_last_layer=True,
)
"""The ``ddconfig`` of the published MAGI-1 VAE (shapes checked against the official weight names)."""


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes in pixels and frames; the defaults are the official pipeline's (tile length fps // 2)."""

    height: int = 256
    width: int = 256
    frames: int = 12
    spatial_overlap: float = 0.25
    temporal_overlap: float = 0.0

    def __post_init__(self) -> None:
        for name in ("height", "width", "frames"):
            as_int(f"VAE tile {name}", getattr(self, name), low=1)
        as_float("VAE tile spatial overlap", self.spatial_overlap, low=0.0, high=0.9)
        as_float("VAE tile temporal overlap", self.temporal_overlap, low=0.0, high=0.9)


def blend(previous: torch.Tensor, current: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Cross-fade the first ``extent`` slices of ``current`` (in place) from the last ones of ``previous``."""
    extent = min(previous.shape[dim], current.shape[dim], extent)
    if extent <= 0:
        return current
    shape = [1] * current.ndim
    shape[dim] = extent
    weight = (torch.arange(extent, device=current.device, dtype=torch.float32) / extent).view(shape)
    tail = previous.narrow(dim, previous.shape[dim] - extent, extent).float()
    head = current.narrow(dim, 0, extent)
    head.copy_(tail * (1 - weight) + head.float() * weight)
    return current


def _stitch(tiles: dict[tuple[int, int, int], torch.Tensor], keep: tuple[int, int, int]) -> torch.Tensor:
    """Concatenate the kept corner of every tile, tiles keyed by their (t, h, w) start positions."""
    starts = [sorted({key[axis] for key in tiles}) for axis in range(3)]
    frames = []
    for f in starts[0]:
        rows = []
        for i in starts[1]:
            row = [tiles[(f, i, j)][:, :, : keep[0], : keep[1], : keep[2]] for j in starts[2]]
            rows.append(torch.cat(row, dim=4))
        frames.append(torch.cat(rows, dim=3))
    return torch.cat(frames, dim=2)


class MagiVAE(nn.Module):
    """The official ``ViTVAE`` (``model_type: vit``) with MAGI-1's encode/decode conventions."""

    def __init__(self, config: ViTConfig, scaling_factor: float = SCALING_FACTOR) -> None:
        super().__init__()
        self.config = config
        self.encoder = ViTEncoder(config)
        self.decoder = ViTDecoder(config)
        self.temporal_factor = config.patch_length
        self.spatial_factor = config.patch_size
        self.latent_channels = config.z_chans
        self.scaling_factor = scaling_factor

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.proj_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.proj_in.weight.device

    @classmethod
    def from_pretrained(
        cls, folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16
    ) -> MagiVAE:
        """Load the VAE from ``folder``: the ``ckpt/vae`` folder itself or a snapshot root holding it."""
        folder = vae_folder(Path(folder))
        model_config = read_config(folder / CONFIG_NAME)
        with torch.device("meta"):
            model = cls(model_config)
        state = read_weights(folder / WEIGHTS_NAME, dtype)
        check_state_dict(model, state, folder / WEIGHTS_NAME)
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device=device, dtype=dtype).eval().requires_grad_(False)

    def latent_frames(self, frames: int) -> int:
        """Latent frames for ``frames`` video frames (1 -> 1, 4k -> k)."""
        return 1 if frames == 1 else frames // self.temporal_factor

    @torch.no_grad()
    def encode(
        self,
        video: torch.Tensor,
        *,
        tiled: bool = True,
        tiles: TileConfig = TileConfig(),
        scaled: bool = True,
    ) -> torch.Tensor:
        """Video [B, 3, T, H, W] in [-1, 1] (T = 1 or a multiple of 4; H, W multiples of 8) -> latents
        [B, 16, T/4 (1 for T = 1), H/8, W/8], times ``scaling_factor`` unless ``scaled`` is False."""
        self._check_video(video)
        video = video.to(device=self.device, dtype=self.dtype)
        latents = self._tiled_encode(video, tiles) if tiled else self._encode_tile(video)
        return latents * self.scaling_factor if scaled else latents

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        *,
        tiled: bool = True,
        tiles: TileConfig = TileConfig(),
        scaled: bool = True,
    ) -> torch.Tensor:
        """Latents [B, 16, t, h, w] (in the DiT's scaled space unless ``scaled`` is False) -> video
        [B, 3, 4t, 8h, 8w] in about [-1, 1], in the VAE's dtype. A one-latent input decodes to a single
        frame (an image), as in the official code; unlike it, a one-latent last temporal tile of a longer
        input still decodes to 4 frames, so t latents always give 4t frames for t > 1."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            shape = tuple(latents.shape)
            raise ValueError(f"expected latents [B, {self.latent_channels}, t, h, w], got {shape}")
        latents = latents.to(device=self.device, dtype=self.dtype)
        if scaled:
            latents = latents / self.scaling_factor
        video = self._tiled_decode(latents, tiles) if tiled else self.decoder(latents)
        return video[:, :, :1] if latents.shape[2] == 1 else video

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != self.config.in_chans:
            raise ValueError(f"expected video [B, 3, T, H, W], got {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if frames != 1 and frames % self.temporal_factor:
            raise ValueError(f"MAGI VAE encodes 1 or {self.temporal_factor}k frames, got {frames}")
        if height % self.spatial_factor or width % self.spatial_factor:
            factor = self.spatial_factor
            raise ValueError(f"height and width must be multiples of {factor}, got {height}x{width}")

    def _encode_tile(self, video: torch.Tensor) -> torch.Tensor:
        single = video.shape[2] == 1
        if single:
            video = video.expand(-1, -1, self.temporal_factor, -1, -1)
        mean = self.encoder(video)[:, : self.latent_channels]
        return mean[:, :, :1] if single else mean

    def _tile_geometry(self, tiles: TileConfig) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Latent tile sizes (t, h, w) and the latent blend extents of the official ``TileProcessor``."""
        if tiles.frames % self.temporal_factor:
            raise ConfigError(f"VAE tile frames must be a multiple of {self.temporal_factor}")
        if tiles.height % self.spatial_factor or tiles.width % self.spatial_factor:
            raise ConfigError(f"VAE tile height and width must be multiples of {self.spatial_factor}")
        size = (
            tiles.frames // self.temporal_factor,
            tiles.height // self.spatial_factor,
            tiles.width // self.spatial_factor,
        )
        overlap = (tiles.temporal_overlap, tiles.spatial_overlap, tiles.spatial_overlap)
        if any(int(s * (1 - o)) < 1 for s, o in zip(size, overlap, strict=True)):
            raise ConfigError("VAE tiles are too small for their overlap (no latent left to step by)")
        return size, tuple(int(s * o) for s, o in zip(size, overlap, strict=True))

    def _tiled_encode(self, video: torch.Tensor, tiles: TileConfig) -> torch.Tensor:
        """Official tiled encode: pixel tiles, each blended in place with its already-blended neighbours."""
        size, extent = self._tile_geometry(tiles)
        sample = (tiles.frames, tiles.height, tiles.width)
        overlap = (tiles.temporal_overlap, tiles.spatial_overlap, tiles.spatial_overlap)
        stride = tuple(int(s * (1 - o)) for s, o in zip(sample, overlap, strict=True))
        starts = [range(0, video.shape[2 + axis], stride[axis]) for axis in range(3)]
        encoded: dict[tuple[int, int, int], torch.Tensor] = {}
        for f, i, j in product(*starts):
            tile = self._encode_tile(video[:, :, f : f + sample[0], i : i + sample[1], j : j + sample[2]])
            for axis, key in enumerate(_previous((f, i, j), stride)):
                if key is not None:
                    tile = blend(encoded[key], tile, extent[axis], dim=2 + axis)
            encoded[(f, i, j)] = tile
        return _stitch(encoded, tuple(s - e for s, e in zip(size, extent, strict=True)))

    def _tiled_decode(self, latents: torch.Tensor, tiles: TileConfig) -> torch.Tensor:
        """Official tiled decode: latent tiles, each blended with its neighbours' raw decoded pixels."""
        size, _ = self._tile_geometry(tiles)
        factor = (self.temporal_factor, self.spatial_factor, self.spatial_factor)
        overlap = (tiles.temporal_overlap, tiles.spatial_overlap, tiles.spatial_overlap)
        stride = tuple(int(s * (1 - o)) for s, o in zip(size, overlap, strict=True))
        extent = tuple(int(s * f * o) for s, f, o in zip(size, factor, overlap, strict=True))
        keep = tuple(s * f - e for s, f, e in zip(size, factor, extent, strict=True))
        starts = [range(0, latents.shape[2 + axis], stride[axis]) for axis in range(3)]
        raw: dict[tuple[int, int, int], torch.Tensor] = {}
        blended: dict[tuple[int, int, int], torch.Tensor] = {}
        for f, i, j in product(*starts):
            raw[(f, i, j)] = self.decoder(latents[:, :, f : f + size[0], i : i + size[1], j : j + size[2]])
            tile = raw[(f, i, j)].clone()
            for axis, key in enumerate(_previous((f, i, j), stride)):
                if key is not None:
                    tile = blend(raw[key], tile, extent[axis], dim=2 + axis)
            blended[(f, i, j)] = tile
        return _stitch(blended, keep)


def _previous(start: tuple[int, int, int], stride: tuple[int, ...]) -> list[tuple[int, int, int] | None]:
    """The start of the previous tile along t, h and w (None at the first tile of that axis)."""
    keys: list[tuple[int, int, int] | None] = []
    for axis in range(3):
        if start[axis] == 0:
            keys.append(None)
            continue
        key = list(start)
        key[axis] -= stride[axis]
        keys.append((key[0], key[1], key[2]))
    return keys


def vae_folder(folder: Path) -> Path:
    """``folder`` when it holds the VAE config, else its ``ckpt/vae`` sub-folder (a snapshot root)."""
    for candidate in (folder, folder / HUB_SUBFOLDER):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise ConfigError(f"no MAGI VAE in {folder}: expected {CONFIG_NAME} there or under {HUB_SUBFOLDER}/")


def read_config(path: Path) -> ViTConfig:
    """The ``ddconfig`` of an official VAE ``config.json``, validated."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("_class_name") != "ViTVAE" or data.get("model_type", "vit") != "vit":
        raise ConfigError(f"{path}: not a MAGI-1 ViTVAE config (_class_name ViTVAE, model_type vit)")
    return from_mapping(ViTConfig, data.get("ddconfig", {}), where=f"{path} ddconfig")


def read_weights(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file, cast to ``dtype`` one at a time (on the CPU)."""
    from safetensors import safe_open

    if not path.is_file():
        raise ConfigError(f"MAGI VAE weights missing: {path}")
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        names = handle.keys()
        return {name: handle.get_tensor(name).to(dtype) for name in names}


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise ``ConfigError`` naming missing, unexpected and mis-shaped keys (a few of each)."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:4])})")
    if wrong:
        shown = ", ".join(f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in wrong[:4])
        parts.append(f"{len(wrong)} with another shape (e.g. {shown})")
    raise ConfigError(f"{source} does not match the MAGI VAE config: " + "; ".join(parts))
