"""The ``pointer`` convolution kernel's measured best tile per GPU and convolution shape.

Triton's autotuner compiles and times every fitting tile of :mod:`core.kernels.triton_conv3d` at each new
convolution shape: 78 s of a first 480p decode on an H100, once per machine and video size. Where this table
(``conv3d_tiles.json``, written by ``bench/conv_tiles.py`` from a full tuning) has the GPU and the
convolution (input and output channels, taps), the kernel tries only the tile that won there at the nearest
number of output positions ``M``: one compile and one timing per shape. GPUs or shapes not in the table
tune every tile as before.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

TABLE = Path(__file__).with_name("conv3d_tiles.json")
"""``{gpu name: [{"c_in", "c_out", "taps": [KT, KH, KW], "m", "tile": [BLOCK_M, BLOCK_N, BLOCK_K,
num_warps, num_stages]}, ...]}``."""
Tile = tuple[int, int, int, int, int]
"""(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)."""
TILES: tuple[Tile, ...] = (
    (128, 128, 32, 8, 3),
    (128, 128, 64, 8, 3),
    (128, 128, 32, 4, 4),
    (256, 128, 32, 8, 3),
    (128, 64, 32, 4, 4),
    (128, 64, 64, 4, 3),
    (64, 128, 32, 4, 4),
    (256, 64, 32, 8, 3),
    (128, 256, 32, 8, 3),
    (128, 16, 32, 4, 4),
    (256, 16, 32, 4, 3),
)
"""The tiles the autotuner tries (each shape once; :mod:`core.kernels.triton_conv3d`); the 16-wide ones
are for the last convolution's 3 (or 12) output channels."""


@functools.cache
def measured_tiles() -> dict[str, list[dict]]:
    """The table, read once."""
    return json.loads(TABLE.read_text())


def measured_tile(
    gpu: str, c_in: int, c_out: int, taps: tuple[int, int, int], m: int, table: dict | None = None
) -> Tile | None:
    """The tile measured best on ``gpu`` for this convolution at the ``M`` nearest ``m`` (by ratio), or
    None where the table has no such GPU and shape (``table`` defaults to :data:`TABLE`'s)."""
    rows = (measured_tiles() if table is None else table).get(gpu, ())
    same = [r for r in rows if (r["c_in"], r["c_out"], tuple(r["taps"])) == (c_in, c_out, tuple(taps))]
    if not same:
        return None
    nearest = min(same, key=lambda r: abs(math.log(r["m"] / max(m, 1))))
    return tuple(nearest["tile"])
