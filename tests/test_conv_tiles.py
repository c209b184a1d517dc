"""The ``pointer`` kernel's measured tiles (``kernels/conv3d_tiles.json``): the lookup, the bench's merge
and, on a CUDA GPU, a first tuning that tries only the table's tile."""

from __future__ import annotations

import json

import pytest
import torch

from bench.conv_tiles import merge, write_table
from core.kernels.conv3d_tiles import TILES, measured_tile, measured_tiles

H100 = "NVIDIA H100 80GB HBM3"
TABLE = {
    "GPU A": [
        {"c_in": 96, "c_out": 96, "taps": [3, 3, 3], "m": 400_000, "tile": [64, 128, 32, 4, 4]},
        {"c_in": 96, "c_out": 96, "taps": [3, 3, 3], "m": 6_400_000, "tile": [256, 128, 32, 8, 3]},
        {"c_in": 192, "c_out": 96, "taps": [1, 3, 3], "m": 400_000, "tile": [128, 128, 64, 8, 3]},
    ]
}


def test_the_tile_is_the_one_measured_at_the_nearest_size_of_the_same_convolution() -> None:
    assert measured_tile("GPU A", 96, 96, (3, 3, 3), 300_000, TABLE) == (64, 128, 32, 4, 4)
    nearer_by_ratio = measured_tile("GPU A", 96, 96, (3, 3, 3), 3_000_000, TABLE)
    assert nearer_by_ratio == (256, 128, 32, 8, 3)
    assert measured_tile("GPU A", 192, 96, (1, 3, 3), 10, TABLE) == (128, 128, 64, 8, 3)


def test_an_unmeasured_gpu_or_convolution_has_no_tile() -> None:
    assert measured_tile("GPU B", 96, 96, (3, 3, 3), 400_000, TABLE) is None
    assert measured_tile("GPU A", 96, 96, (1, 3, 3), 400_000, TABLE) is None
    assert measured_tile("GPU A", 96, 192, (3, 3, 3), 400_000, TABLE) is None


def test_the_shipped_table_has_the_h100s_480p_decode_and_only_known_tiles() -> None:
    rows = measured_tiles()[H100]
    assert {tuple(row["tile"]) for row in rows} <= set(TILES)
    shapes = [(row["c_in"], row["c_out"], tuple(row["taps"]), row["m"]) for row in rows]
    assert len(set(shapes)) == len(shapes)  # one tile per convolution and M, as merge() keeps them
    assert measured_tile(H100, 96, 3, (3, 3, 3), 6_389_760) == (256, 16, 32, 4, 3)  # the last convolution


def test_the_bench_merges_a_full_tuning_into_the_table(tmp_path) -> None:
    new = [
        {"c_in": 96, "c_out": 96, "taps": [3, 3, 3], "m": 400_000, "tile": [128, 128, 32, 8, 3]},
        {"c_in": 384, "c_out": 384, "taps": [1, 1, 1], "m": 25_000, "tile": [128, 64, 64, 4, 3]},
    ]
    merged = merge(TABLE, "GPU A", new) | merge({}, "GPU B", new[:1])
    assert len(merged["GPU A"]) == 4  # one replaced (same shape and M), one added
    assert measured_tile("GPU A", 96, 96, (3, 3, 3), 400_000, merged) == (128, 128, 32, 8, 3)
    assert measured_tile("GPU B", 384, 384, (1, 1, 1), 25_000, merged) is None
    path = tmp_path / "tiles.json"
    write_table(merged, path)
    assert json.loads(path.read_text()) == merged


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton)")
def test_on_a_gpu_a_measured_convolution_is_tuned_on_its_tile_alone(monkeypatch) -> None:
    from core.kernels import triton_conv3d
    from core.kernels.causal_conv3d import prepare_weight

    monkeypatch.setattr(triton_conv3d, "_gpu_name", lambda index: H100)
    device = torch.device("cuda", 0)
    x = torch.randn(1, 64, 3, 7, 5, device=device, dtype=torch.bfloat16)  # a size no other test tunes
    x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = torch.randn(3, 64, 3, 3, 3, device=device, dtype=torch.bfloat16)
    out = triton_conv3d.conv3d_triton(x, prepare_weight(weight), None, (2, 1, 1))
    reference = torch.nn.functional.conv3d(torch.nn.functional.pad(x, (1, 1, 1, 1, 2, 0)), weight)
    torch.testing.assert_close(out.float(), reference.float(), atol=0.1, rtol=0.02)
    tuned = {key[:3]: config for key, config in triton_conv3d._conv3d_kernel.cache.items()}
    tile = triton_conv3d.tile_of(tuned[(3 * 7 * 5, 64, 3)])  # keyed by M, C_in, C_out first
    assert tile == measured_tile(H100, 64, 3, (3, 3, 3), 105) == (128, 16, 32, 4, 4)
