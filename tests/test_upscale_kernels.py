"""Block-sparse attention: torch fallback and Triton kernel against a dense masked reference; LCSA masks."""

from __future__ import annotations

import pytest
import torch

from core.kernels.block_sparse_attention import (
    block_sparse_attention,
    block_sparse_attention_torch,
    dense_masked_attention,
    triton_available,
)
from core.kernels.flex_block_sparse import block_sparse_attention_flex, flex_block_mask
from core.upscale.sparse_mask import draft_block_mask, from_windows, local_window_mask, to_windows


def random_case(seed: int, lq: int = 6, lk: int = 9, block: int = 16, dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 2, lq * block, dim, generator=generator)
    k = torch.randn(1, 2, lk * block, dim, generator=generator)
    v = torch.randn(1, 2, lk * block, dim, generator=generator)
    mask = torch.rand(1, 2, lq, lk, generator=generator) > 0.6
    mask[0, 0, 1] = False  # a query block that sees nothing
    return q, k, v, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fallback_equals_dense_reference(seed: int) -> None:
    q, k, v, mask = random_case(seed)
    out = block_sparse_attention_torch(q, k, v, mask, block_size=16, query_blocks_per_step=4)
    expected = dense_masked_attention(q, k, v, mask, block_size=16)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(out[0, 0, 16:32]) == 0


def test_fallback_with_full_mask_is_plain_attention() -> None:
    q, k, v, mask = random_case(3)
    full = torch.ones_like(mask)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    out = block_sparse_attention(q, k, v, full, block_size=16)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_equals_fallback() -> None:
    """FlexAttention with our mask as full blocks (on the CPU its eager reference, through the mask
    function) gives the fallback's output, zeros for a query block that sees nothing included."""
    q, k, v, mask = random_case(5)
    assert torch.equal(flex_block_mask(mask, q.shape[2], k.shape[2], 16).to_dense().bool(), mask)
    out = block_sparse_attention_flex(q, k, v, mask, block_size=16)
    expected = block_sparse_attention_torch(q, k, v, mask, block_size=16)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(out[0, 0, 16:32]) == 0


def test_bad_mask_shape_is_refused() -> None:
    q, k, v, mask = random_case(4)
    with pytest.raises(ValueError, match="block mask"):
        block_sparse_attention_torch(q, k, v, mask[..., :-1], block_size=16)


@pytest.mark.skipif(
    not torch.cuda.is_available() or not triton_available(torch.device("cuda")),
    reason="needs a CUDA GPU with Triton",
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_equals_fallback(dtype: torch.dtype) -> None:
    from core.kernels.triton_block_sparse import block_sparse_attention_triton

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 12, n * 128, 128, generator=generator).to("cuda", dtype) for n in (8, 16, 16))
    mask = (torch.rand(1, 12, 8, 16, generator=generator) > 0.5).cuda()
    mask[0, 3, 2] = False
    out = block_sparse_attention_triton(q, k, v, mask)
    expected = block_sparse_attention_torch(q.float(), k.float(), v.float(), mask).to(dtype)
    torch.testing.assert_close(out, expected, atol=2e-2, rtol=2e-2)
    assert torch.count_nonzero(out[0, 3, 256:384]) == 0


def test_windows_round_trip_and_order() -> None:
    x = torch.arange(4 * 16 * 8 * 3, dtype=torch.float32).view(1, -1, 3)
    windows = to_windows(x, 4, 16, 8)
    assert windows.shape == (4, 128, 3)
    torch.testing.assert_close(from_windows(windows, 4, 16, 8), x)
    assert windows[1, 0, 0] == x[0, 8 * 8, 0]  # second window starts at row 8 of frame 0


def test_local_window_mask_is_a_centred_square() -> None:
    mask = local_window_mask(5, 6, 3)
    assert mask.shape == (30, 30)
    centre = 2 * 6 + 3
    allowed = {divmod(int(j), 6) for j in mask[centre].nonzero()}
    assert allowed == {(r, c) for r in (1, 2, 3) for c in (2, 3, 4)}
    assert mask[0].sum() == 4  # corner: the window is cut by the border, not shifted


def test_draft_mask_keeps_topk_within_locality() -> None:
    generator = torch.Generator().manual_seed(0)
    windows, heads, slabs = 6, 2, 2
    q = torch.randn(windows * slabs, 128, 8, generator=generator)
    k = torch.randn(windows * 3, 128, 8, generator=generator)
    local = local_window_mask(2, 3, 3)
    mask = draft_block_mask(q, k, heads, slabs, topk=5, local_mask=local)
    assert mask.shape == (1, heads, windows * slabs, windows * 3)
    per_slab = mask[0].view(heads, slabs, windows, 3, windows).sum(dim=(2, 3, 4))
    assert (per_slab <= 5).all() and (per_slab >= 1).all()
    tiled = local.repeat(slabs, 3)
    assert not (mask[0] & ~tiled).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_flex_attention_equals_fallback() -> None:
    """On CUDA only the listed blocks run (no mask function): the same output as the fallback."""
    generator = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(1, 12, n * 128, 128, generator=generator).to("cuda", torch.bfloat16) for n in (8, 16, 16)
    )
    mask = (torch.rand(1, 12, 8, 16, generator=generator) > 0.5).cuda()
    mask[0, 3, 2] = False
    out = block_sparse_attention_flex(q, k, v, mask)
    expected = block_sparse_attention_torch(q.float(), k.float(), v.float(), mask).to(torch.bfloat16)
    torch.testing.assert_close(out, expected, atol=2e-2, rtol=2e-2)
    assert torch.count_nonzero(out[0, 3, 256:384]) == 0
