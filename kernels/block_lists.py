"""A block mask as per-query-block lists of key blocks: the form the Triton kernel and FlexAttention take."""

from __future__ import annotations

import torch


def active_key_blocks(block_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query block: the indices of its allowed key blocks (first ``count`` entries) and that count."""
    mask = block_mask.to(torch.bool)
    counts = mask.sum(dim=-1, dtype=torch.int32).contiguous()
    order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True).to(torch.int32).contiguous()
    return order, counts
