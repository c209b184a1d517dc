"""Tiny random-weight models in the real Hub layouts, built locally for tests and ``--dev``: one module per
model family, and :func:`build`, the builder the model store is given for cards with a ``builder``.

They use the same diffusers/transformers classes as the real checkpoints with tiny configs, so every
pipeline runs end to end on a CPU in seconds while loading exactly like the published repos.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.tiny.esrgan import build_tiny_esrgan
from core.tiny.flashvsr import build_tiny_flashvsr
from core.tiny.magi import build_tiny_magi
from core.tiny.skyreels import build_tiny_skyreels_df
from core.tiny.wan import build_tiny_wan
from core.tiny.wan_i2v import build_tiny_wan_flf2v, build_tiny_wan_i2v, build_tiny_wan_ti2v
from weights.card_facts import Architecture
from weights.store import BUILT_MARKER

BUILDERS: dict[str, Callable[..., Path]] = {
    "tiny-wan": build_tiny_wan,
    "tiny-magi": build_tiny_magi,
    "tiny-skyreels-df": build_tiny_skyreels_df,
    "tiny-flashvsr": build_tiny_flashvsr,
    "tiny-esrgan": build_tiny_esrgan,
    "tiny-wan-i2v": build_tiny_wan_i2v,
    "tiny-wan-flf2v": build_tiny_wan_flf2v,
    "tiny-wan-ti2v": build_tiny_wan_ti2v,
}
"""A card's ``builder`` name -> the function that writes that model into a folder."""


SIZED_BY_CARD = ("tiny-wan",)
"""Builders that size their model from the card's ``arch`` facts (a second tiny Wan is a card, no code)."""


def build(builder: str, folder: Path, arch: Architecture | None = None) -> Path:
    """Build the tiny model named ``builder`` into ``folder`` unless it is already complete there;
    ``arch``: the card's facts, for the builders in :data:`SIZED_BY_CARD`."""
    folder = Path(folder)
    marker = folder / BUILT_MARKER
    if marker.exists():
        return folder
    if builder not in BUILDERS:
        raise KeyError(f"no tiny-model builder called {builder!r}; known: {', '.join(BUILDERS)}")
    folder.mkdir(parents=True, exist_ok=True)
    options = {"arch": arch} if builder in SIZED_BY_CARD else {}
    BUILDERS[builder](folder, **options)
    marker.write_text(json.dumps({"builder": builder}), encoding="utf-8")
    return folder
