"""FlashVSR's streaming Wan2.1 DiT, with the parameter names of the official checkpoint.

Wan2.1 blocks (AdaLN modulation, RMS-normed q/k with 3D RoPE, cross-attention, GELU FFN) changed for
streaming super-resolution: self-attention is locality-constrained block-sparse over 2x8x8 windows and
attends to a KV cache of earlier chunks; cross-attention keys/values come from the fixed prompt once; the
timestep is fixed (one step), so its embeddings are computed once in :meth:`StreamingWanDiT.prepare`.
Normalisation, timestep embedding and RoPE tables come from diffusers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_1d_rotary_pos_embed, get_timestep_embedding
from diffusers.models.normalization import RMSNorm
from torch import nn

from core.kernels.block_sparse_attention import block_sparse_attention
from core.kernels.flex_block_sparse import block_sparse_attention_flex
from core.upscale.config import DiTConfig
from core.upscale.kv_cache import StreamingKVCache
from core.upscale.sparse_mask import WINDOW, WINDOW_TOKENS, draft_block_mask, from_windows, to_windows

PATCH = (1, 2, 2)


@dataclass
class ChunkContext:
    """What every block needs to know about the chunk being processed."""

    frames: int
    height: int
    width: int
    rope: torch.Tensor
    topk: int
    local_mask: torch.Tensor
    cache: StreamingKVCache
    regions: BlockRegions
    attention: str = "sparse"

    @property
    def windows_per_slab(self) -> int:
        return (self.height // WINDOW[1]) * (self.width // WINDOW[2])


def rope_table(
    head_dim: int, frame_offset: int, frames: int, height: int, width: int, device: torch.device
) -> torch.Tensor:
    """Complex RoPE factors (f*h*w, head_dim/2): Wan's 3D split, time positions from ``frame_offset``."""
    h_dim = w_dim = head_dim // 3
    t_dim = head_dim - h_dim - w_dim
    parts = []
    for dim, positions in (
        (t_dim, torch.arange(frame_offset, frame_offset + frames)),
        (h_dim, torch.arange(height)),
        (w_dim, torch.arange(width)),
    ):
        parts.append(get_1d_rotary_pos_embed(dim, positions, use_real=False, freqs_dtype=torch.float64))
    t, h, w = parts
    table = torch.cat(
        [
            t[:, None, None, :].expand(frames, height, width, -1),
            h[None, :, None, :].expand(frames, height, width, -1),
            w[None, None, :, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    )
    return table.reshape(frames * height * width, -1).to(device=device, dtype=torch.complex64)


def apply_rope(x: torch.Tensor, table: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate (1, L, heads*head_dim) query/key features by the complex ``table``."""
    batch, length, dim = x.shape
    pairs = x.float().reshape(batch, length, num_heads, -1, 2)
    rotated = torch.view_as_complex(pairs) * table[None, :, None, :]
    return torch.view_as_real(rotated).reshape(batch, length, dim).to(x.dtype)


def apply_rope_real(x: torch.Tensor, table: torch.Tensor, num_heads: int) -> torch.Tensor:
    """:func:`apply_rope` with the table as real (cos, sin) pairs (L, head_dim/2, 2): what compile traces."""
    batch, length, dim = x.shape
    pairs = x.float().reshape(batch, length, num_heads, -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = table[None, :, None, :, 0], table[None, :, None, :, 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(batch, length, dim).to(x.dtype)


def rotate(x: torch.Tensor, table: torch.Tensor, num_heads: int) -> torch.Tensor:
    """RoPE with a complex table (eager) or a real one (compiled regions)."""
    if table.is_complex():
        return apply_rope(x, table, num_heads)
    return apply_rope_real(x, table, num_heads)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(1, L, heads*d) -> (1, heads, L, d)."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


class Projections(nn.Module):
    """The q, k, v, o linears and the q/k RMS norms of a Wan attention layer (the checkpoint's names)."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps=eps)
        self.norm_k = RMSNorm(dim, eps=eps)


class SelfAttention(Projections):
    """Streaming LCSA self-attention over windows of the current chunk plus the cached ones.

    The projections, norms and RoPE run in :func:`attention_inputs` (a compile region); this module's
    :meth:`attend` does the part with state: the KV cache, the draft mask and the attention kernel."""

    def attend(
        self, q_win: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, layer: int, chunk: ChunkContext
    ) -> torch.Tensor:
        """Attention output in windows (n, 128, dim) for the chunk's windowed q, k, v."""
        k_win, v_win = chunk.cache.with_new(layer, k_new, v_new)
        heads = [split_heads(t.reshape(1, -1, t.shape[-1]), self.num_heads) for t in (q_win, k_win, v_win)]
        if chunk.attention == "dense":
            out = F.scaled_dot_product_attention(*heads)
        else:
            mask = draft_block_mask(
                q_win, k_win, self.num_heads, chunk.frames // WINDOW[0], chunk.topk, chunk.local_mask
            )
            sparse = block_sparse_attention_flex if chunk.attention == "flex" else block_sparse_attention
            out = sparse(*heads, mask, block_size=WINDOW_TOKENS)
        chunk.cache.append(layer, k_new, v_new, chunk.windows_per_slab)
        return out.transpose(1, 2).reshape(-1, WINDOW_TOKENS, q_win.shape[-1])


class CrossAttention(Projections):
    """Cross-attention to the fixed prompt; its keys/values are computed once by :meth:`set_context`."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__(dim, num_heads, eps)
        self.cached_k: torch.Tensor | None = None
        self.cached_v: torch.Tensor | None = None

    @torch.no_grad()
    def set_context(self, context: torch.Tensor) -> None:
        self.cached_k = split_heads(self.norm_k(self.k(context)), self.num_heads)
        self.cached_v = split_heads(self.v(context), self.num_heads)

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cached_k is None or self.cached_v is None:
            raise RuntimeError("call StreamingWanDiT.prepare(context) before running chunks")
        return self.cached_k, self.cached_v

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.norm_q(self.q(x)), self.num_heads)
        out = F.scaled_dot_product_attention(q, keys, values)
        return self.o(out.transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        dim, eps = config.dim, config.eps
        self.self_attn = SelfAttention(dim, config.num_heads, eps)
        self.cross_attn = CrossAttention(dim, config.num_heads, eps)
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(config.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, t_mod: torch.Tensor, layer: int, chunk: ChunkContext) -> torch.Tensor:
        regions = chunk.regions
        f, h, w = chunk.frames, chunk.height, chunk.width
        q_win, k_win, v_win = regions.inputs(self, x, t_mod, chunk.rope, f, h, w)
        attended = self.self_attn.attend(q_win, k_win, v_win, layer, chunk)
        return regions.outputs(self, x, attended, t_mod, *self.cross_attn.context(), f, h, w)


def attention_inputs(
    block: DiTBlock, x: torch.Tensor, t_mod: torch.Tensor, rope: torch.Tensor, f: int, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Modulated norm, q/k/v projections, q/k norms and RoPE, in windows (the first compile region)."""
    shift, scale = (block.modulation.to(t_mod.dtype) + t_mod)[:, :2].chunk(2, dim=1)
    attn_in = block.norm1(x) * (1 + scale) + shift
    sa = block.self_attn
    q = rotate(sa.norm_q(sa.q(attn_in)), rope, sa.num_heads)
    k = rotate(sa.norm_k(sa.k(attn_in)), rope, sa.num_heads)
    return to_windows(q, f, h, w), to_windows(k, f, h, w), to_windows(sa.v(attn_in), f, h, w)


def attention_outputs(
    block: DiTBlock,
    x: torch.Tensor,
    attended: torch.Tensor,
    t_mod: torch.Tensor,
    cross_k: torch.Tensor,
    cross_v: torch.Tensor,
    f: int,
    h: int,
    w: int,
) -> torch.Tensor:
    """Output projection and gate, cross-attention and the FFN (the second compile region)."""
    modulation = block.modulation.to(t_mod.dtype) + t_mod
    gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation[:, 2:].chunk(4, dim=1)
    x = x + gate_msa * block.self_attn.o(from_windows(attended, f, h, w))
    x = x + block.cross_attn(block.norm3(x), cross_k, cross_v)
    ffn_in = block.norm2(x) * (1 + scale_mlp) + shift_mlp
    return x + gate_mlp * block.ffn(ffn_in)


@dataclass(frozen=True)
class BlockRegions:
    """The two dense parts of every block, eager or compiled (:mod:`core.upscale.compile_regions`)."""

    inputs: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = attention_inputs
    outputs: Callable[..., torch.Tensor] = attention_outputs


class Head(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        dim = config.dim
        self.norm = nn.LayerNorm(dim, eps=config.eps, elementwise_affine=False)
        self.head = nn.Linear(dim, config.out_dim * PATCH[0] * PATCH[1] * PATCH[2])
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.to(t.dtype) + t.unsqueeze(1)).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


class StreamingWanDiT(nn.Module):
    """The FlashVSR DiT; :meth:`forward_chunk` denoises one chunk of latent frames in one step."""

    TIMESTEP = 1000.0

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=PATCH, stride=PATCH)
        self.text_embedding = nn.Sequential(
            nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self._t: torch.Tensor | None = None
        self._t_mod: torch.Tensor | None = None
        self.regions = BlockRegions()
        self.real_rope = False
        self.cuda_graphs = False

    @torch.no_grad()
    def prepare(self, context: torch.Tensor) -> None:
        """Fix the prompt (cross-attention keys/values) and the timestep embeddings for streaming."""
        param = self.patch_embedding.weight
        context = context.to(device=param.device, dtype=param.dtype)
        if context.ndim == 2:
            context = context.unsqueeze(0)
        text = self.text_embedding(context)
        for block in self.blocks:
            block.cross_attn.set_context(text)
        timestep = torch.tensor([self.TIMESTEP], device=param.device)
        sinusoid = get_timestep_embedding(
            timestep, self.config.freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0
        )
        self._t = self.time_embedding(sinusoid.to(param.dtype))
        self._t_mod = self.time_projection(self._t).unflatten(1, (6, self.config.dim))

    @torch.no_grad()
    def forward_chunk(
        self,
        latents: torch.Tensor,
        lq_features: list[torch.Tensor],
        frame_offset: int,
        cache: StreamingKVCache,
        topk: int,
        local_mask: torch.Tensor,
        attention: str = "sparse",
    ) -> torch.Tensor:
        """Velocity for ``latents`` (1, C, f, H/8, W/8) whose first frame is latent frame ``frame_offset``;
        ``attention`` as :class:`~core.upscale.speed.VSRSpeed` names it (the kernel, or dense)."""
        if self._t is None or self._t_mod is None:
            raise RuntimeError("call prepare(context) before forward_chunk")
        if self.cuda_graphs:  # outputs of the previous chunk's graphs may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        x = self.patch_embedding(latents)
        frames, height, width = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        rope = rope_table(self.config.head_dim, frame_offset, frames, height, width, x.device)
        if self.real_rope:
            rope = torch.view_as_real(rope).contiguous()
        chunk = ChunkContext(frames, height, width, rope, topk, local_mask, cache, self.regions, attention)
        for layer, block in enumerate(self.blocks):
            if layer < len(lq_features):
                x = x + lq_features[layer]
            x = block(x, self._t_mod, layer, chunk)
        x = self.head(x, self._t)
        return self.unpatchify(x, frames, height, width)

    def unpatchify(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        pf, ph, pw = PATCH
        x = x.view(1, frames, height, width, pf, ph, pw, self.config.out_dim)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(1, self.config.out_dim, frames * pf, height * ph, width * pw)
