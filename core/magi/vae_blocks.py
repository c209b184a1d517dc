"""The transformer blocks of the MAGI-1 VAE (a ViT encoder and decoder over 4x8x8 video patches).

Module and parameter names follow the official ``inference/model/vae/vae_module.py`` so the published
``ckpt/vae/diffusion_pytorch_model.safetensors`` loads with a strict key and shape match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.validation import ConfigError


@dataclass(frozen=True)
class ViTConfig:
    """The ``ddconfig`` of the official ``ViTVAE`` (config.json); defaults are the official constructor's.

    ``qk_scale``, the dropout rates and ``drop_path_rate`` are accepted for fidelity but unused at
    inference (the official attention ignores ``qk_scale`` too)."""

    video_size: int = 256
    video_length: int = 16
    patch_size: int = 8
    patch_length: int = 4
    in_chans: int = 3
    z_chans: int = 4
    double_z: bool = True
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    with_cls_token: bool = True
    norm_code: bool = False
    ln_in_attn: bool = False
    conv_last_layer: bool = False
    use_rope: bool = False
    use_final_proj: bool = False

    def __post_init__(self) -> None:
        unsupported = {
            "double_z": not self.double_z,
            "with_cls_token": not self.with_cls_token,
            "conv_last_layer": not self.conv_last_layer,
            "norm_code": self.norm_code,
            "use_rope": self.use_rope,
            "use_final_proj": self.use_final_proj,
        }
        bad = [name for name, is_bad in unsupported.items() if is_bad]
        if bad:
            raise ConfigError(f"MAGI VAE config: unsupported setting(s) {', '.join(bad)} (not in MAGI-1)")
        if self.embed_dim % self.num_heads:
            raise ConfigError("MAGI VAE config: embed_dim must be a multiple of num_heads")
        if self.embed_dim % (self.patch_length * self.patch_size**2):
            raise ConfigError("MAGI VAE config: embed_dim must be a multiple of the patch volume")

    @property
    def latent_grid(self) -> tuple[int, int, int]:
        """The (t, h, w) latent grid the learned position embeddings were trained on."""
        side = self.video_size // self.patch_size
        return self.video_length // self.patch_length, side, side


def head_norm(qkv: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Official ``ManualLayerNorm`` over each head of q, k and v: ``(x - mean) / (std + eps)``, no affine."""
    x = qkv.float()
    x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True, unbiased=False) + eps)
    return x.to(qkv.dtype)


class Attention(nn.Module):
    """Full self-attention over all video tokens, optionally with the per-head q/k/v norm (``ln_in_attn``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, ln_in_attn: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_in_attn = ln_in_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        if self.ln_in_attn:
            qkv = head_norm(qkv)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; with ``ln_in_attn`` the attention norm is the per-head q/k/v norm."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.Identity() if cfg.ln_in_attn else nn.LayerNorm(dim)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.ln_in_attn)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        kernel = (cfg.patch_length, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video)


class _ViTTrunk(nn.Module):
    """CLS token, learned position embedding (resized trilinearly to other grids), blocks and final norm."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        t, h, w = cfg.latent_grid
        self.cls_token = nn.Parameter(torch.empty(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.empty(1, t * h * w + 1, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def position_embedding(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """The position embedding for a latent ``grid`` (t, h, w), CLS position first."""
        reference = self.cfg.latent_grid
        if grid == reference:
            return self.pos_embed
        patches = self.pos_embed[:, 1:].reshape(1, *reference, -1).permute(0, 4, 1, 2, 3)
        patches = F.interpolate(patches, size=grid, mode="trilinear", align_corners=False)
        patches = patches.permute(0, 2, 3, 4, 1).reshape(1, grid[0] * grid[1] * grid[2], -1)
        return torch.cat([self.pos_embed[:, :1], patches], dim=1)

    def run(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Tokens [B, L, C] on ``grid`` through the trunk; returns [B, L, C] without the CLS token."""
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.position_embedding(grid)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:]


class ViTEncoder(_ViTTrunk):
    """Video [B, 3, T, H, W] -> Gaussian moments [B, 2 * z_chans, T/4, H/8, W/8] (mean first)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__(cfg)
        self.patch_embed = PatchEmbed(cfg)
        self.last_layer = nn.Linear(cfg.embed_dim, 2 * cfg.z_chans)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(video)
        batch, _, t, h, w = x.shape
        x = self.last_layer(self.run(x.flatten(2).transpose(1, 2), (t, h, w)))
        return x.reshape(batch, t, h, w, -1).permute(0, 4, 1, 2, 3)


class ViTDecoder(_ViTTrunk):
    """Latents [B, z_chans, t, h, w] -> video [B, 3, 4t, 8h, 8w] (tokens unpatchified, then a 3x3x3 conv)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__(cfg)
        self.proj_in = nn.Linear(cfg.z_chans, cfg.embed_dim)
        self.unpatch_channels = cfg.embed_dim // (cfg.patch_length * cfg.patch_size**2)
        self.last_layer = nn.Conv3d(self.unpatch_channels, 3, kernel_size=3, stride=1, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch, channels, t, h, w = latents.shape
        x = self.proj_in(latents.permute(0, 2, 3, 4, 1).reshape(batch, t * h * w, channels))
        x = self.run(x, (t, h, w))
        pt, ps = self.cfg.patch_length, self.cfg.patch_size
        x = x.reshape(batch, t, h, w, pt, ps, ps, self.unpatch_channels)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(batch, self.unpatch_channels, t * pt, h * ps, w * ps)
        return self.last_layer(x)
