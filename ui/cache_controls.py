"""Speed controls for the text-to-video tab: a Speed radio plus an Advanced accordion (layout only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gradio as gr

from core.caches.config import speed_presets
from weights.registry import ModelCard

SPEEDS = ("Off", "Fast", "Faster")
AUTO_METHOD = "auto"
METHOD_LABELS = {
    AUTO_METHOD: "Auto (the preset's method)",
    "teacache": "TeaCache",
    "first_block": "First-block cache",
    "mag": "MagCache",
    "taylorseer": "TaylorSeer",
}


def build_cache_controls(cards: Iterable[ModelCard]) -> tuple[gr.Radio, gr.Dropdown, gr.Number]:
    """Create the Speed radio and the Advanced accordion (method, threshold); call inside a ``gr.Blocks``."""
    names = ", ".join(card.name for card in cards)
    speed = gr.Radio(
        list(SPEEDS),
        value="Off",
        label="Speed",
        info="Reuse work between denoising steps. Fast ≈ 2x, Faster ≈ 3x, with some loss of detail.",
    )
    with gr.Accordion("Advanced speed settings", open=False):
        method = gr.Dropdown(
            [(label, value) for value, label in METHOD_LABELS.items()],
            value=AUTO_METHOD,
            label="Cache method",
            info=f"Step cache for {names}." if names else "Step cache.",
        )
        threshold = gr.Number(
            value=None,
            label="Threshold",
            minimum=0,
            info="Empty: from the Speed preset. Higher reuses more. TaylorSeer: refresh interval in steps.",
        )
    return speed, method, threshold


def cache_dict_from_controls(
    speed: str | None, method: str | None, threshold: float | None
) -> dict[str, Any] | None:
    """The request's ``cache`` mapping for the control values (``None`` means no cache).

    An Advanced method wins over the Speed radio; its threshold, when empty, comes from the preset. A
    threshold with the Auto method is that of the presets' method (``presets/speed.yaml``), so that it is
    checked against that method's range, never dropped for the preset's value.
    """
    preset = (speed or "Off").lower()
    if threshold is not None and method in (None, "", AUTO_METHOD):
        method = speed_presets()["preset_method"]
    if method in (None, "", AUTO_METHOD, "none"):
        return None if preset == "off" else {"preset": preset}
    if threshold is not None:
        return {"method": method, "threshold": threshold}
    return {"method": method, "preset": "fast" if preset == "off" else preset}
