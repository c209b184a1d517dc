"""Locality-constrained sparse attention (LCSA) masks over 3D windows of 2x8x8 tokens.

Tokens are grouped into windows of 2 latent frames x 8x8 patches (128 tokens, one attention block). A
"slab" is the row of windows covering two latent frames. For every query slab and head, the mean query
and key of each window are scored, key windows outside a ``local_range`` square around the query window
are excluded, and the ``topk`` best (query window, key window) pairs of the slab are kept — the rule of
FlashVSR's ``generate_draft_block_mask`` with its "normal slide" local window.
"""

from __future__ import annotations

import torch

WINDOW = (2, 8, 8)
WINDOW_TOKENS = WINDOW[0] * WINDOW[1] * WINDOW[2]


def to_windows(x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """(1, f*h*w, C) tokens -> (f/2 * h/8 * w/8, 128, C) windows, ordered slab, window row, window column."""
    wf, wh, ww = WINDOW
    channels = x.shape[-1]
    x = x.view(frames // wf, wf, height // wh, wh, width // ww, ww, channels)
    return x.permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, WINDOW_TOKENS, channels)


def from_windows(windows: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`to_windows`: back to (1, f*h*w, C)."""
    wf, wh, ww = WINDOW
    channels = windows.shape[-1]
    x = windows.view(frames // wf, height // wh, width // ww, wf, wh, ww, channels)
    return x.permute(0, 3, 1, 4, 2, 5, 6).reshape(1, frames * height * width, channels)


def local_window_mask(rows: int, cols: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """(rows*cols, rows*cols) bool: key window j lies in the ``window``-wide square centred on query i."""
    r = torch.arange(rows, device=device).repeat_interleave(cols)
    c = torch.arange(cols, device=device).repeat(rows)
    start_r, start_c = r - window // 2, c - window // 2
    in_row = (r[None, :] >= start_r[:, None]) & (r[None, :] <= start_r[:, None] + window - 1)
    in_col = (c[None, :] >= start_c[:, None]) & (c[None, :] <= start_c[:, None] + window - 1)
    return in_row & in_col


@torch.no_grad()
def draft_block_mask(
    q_windows: torch.Tensor,
    k_windows: torch.Tensor,
    num_heads: int,
    query_slabs: int,
    topk: int,
    local_mask: torch.Tensor,
) -> torch.Tensor:
    """Block mask (1, heads, query windows, key windows) from window-mean scores, locality and top-k.

    As in the official code the window means and their scaled dot products stay in the inputs' dtype
    (bf16 on GPUs); only the masked softmax and the top-k run in float32. Rounding the scores to bf16
    creates ties at the top-k threshold, and ``>`` drops every tied entry, so an fp32 draft keeps other
    windows (0.03-0.1% of mask entries at real sizes).
    """
    q_mean = q_windows.mean(dim=1)
    k_mean = k_windows.mean(dim=1)
    n_q, n_k = q_mean.shape[0], k_mean.shape[0]
    head_dim = q_mean.shape[-1] // num_heads
    q_heads = q_mean.view(n_q, num_heads, head_dim).transpose(0, 1)
    k_heads = k_mean.view(n_k, num_heads, head_dim).transpose(0, 1)
    scores = (q_heads @ k_heads.transpose(1, 2) / head_dim**0.5).float()
    windows = local_mask.shape[0]
    allowed = local_mask.repeat(n_q // windows, n_k // windows)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    per_slab = weights.view(num_heads * query_slabs, -1)
    keep = min(per_slab.shape[1] - 1, topk)
    threshold = torch.topk(per_slab, k=keep + 1, dim=1).values[:, -1:]
    mask = (per_slab > threshold).view(num_heads, n_q, n_k)
    return mask.unsqueeze(0)
