"""The ``pointer`` convolution kernel's tunings of this process as rows of ``kernels/conv3d_tiles.json``,
and merging such rows into that table (:mod:`core.kernels.conv3d_tiles`).

On the GPU, a full tuning (every tile timed at every shape) of the decodes a bench runs::

    python3 bench/wan_vae_speed.py --variants "app chunk4 pointer" --full-tuning --json $OUT/vae.json

writes the winners under ``"pointer_tiles"`` with the GPU's name; then, here::

    python3 bench/conv_tiles.py $OUT/vae.json     # merges them into kernels/conv3d_tiles.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.kernels.conv3d_tiles import TABLE  # noqa: E402


def tuned_rows() -> list[dict]:
    """One row per convolution shape the ``pointer`` kernel was tuned for in this process (needs Triton)."""
    from core.kernels.triton_conv3d import TUNING_KEY, _conv3d_kernel, tile_of

    rows = []
    for key, config in _conv3d_kernel.cache.items():
        named = dict(zip(TUNING_KEY, key, strict=False))
        taps = [named["KT"], named["KH"], named["KW"]]
        shape = {"c_in": named["C_in"], "c_out": named["C_out"], "taps": taps, "m": named["M"]}
        rows.append(shape | {"tile": list(tile_of(config))})
    return rows


def merge(table: dict[str, list[dict]], gpu: str, rows: list[dict]) -> dict[str, list[dict]]:
    """``table`` with ``rows`` for ``gpu`` added; a row replaces one of the same shape and ``M``."""

    def shape(row: dict) -> tuple:
        return row["c_in"], row["c_out"], tuple(row["taps"]), row["m"]

    kept = {shape(row): row for row in table.get(gpu, [])}
    kept.update({shape(row): row for row in rows})
    return {**table, gpu: [kept[key] for key in sorted(kept)]}


def write_table(table: dict[str, list[dict]], path: Path = TABLE) -> None:
    """The table as JSON, one row per line."""
    parts = []
    for gpu, rows in sorted(table.items()):
        lines = ",\n".join("  " + json.dumps(row) for row in rows)
        parts.append(f"{json.dumps(gpu)}: [\n{lines}\n]")
    path.write_text("{" + ", ".join(parts) + "}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", help="a bench/wan_vae_speed.py --full-tuning JSON")
    args = parser.parse_args()
    result = json.loads(Path(args.bench_json).read_text())
    rows = result.get("pointer_tiles")
    if not rows:
        sys.exit(f"{args.bench_json} has no pointer_tiles: run bench/wan_vae_speed.py with --full-tuning")
    table = merge(json.loads(TABLE.read_text()), result["gpu"], rows)
    write_table(table)
    print(f"{len(rows)} rows for {result['gpu']} merged into {TABLE}")


if __name__ == "__main__":
    main()
