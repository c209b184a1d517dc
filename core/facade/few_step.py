"""The Text to video tab's fast mode and LoRA fields: what the few-step mode trades, CFG on the first
step, and LoRAs typed as ``name:strength[:expert]`` entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.facade.fields import Field
from core.lora.spec import EXPERTS
from core.validation import ConfigError
from weights.registry import ModelCard

LORAS_HELP = (
    "Comma-separated name:strength[:expert] (e.g. style.safetensors:0.8); files in the loras folder "
    "(--loras-dir). Wan2.2 A14B: expert high, low or both."
)


def few_step_fields(cards: list[ModelCard]) -> dict[str, Field]:
    """The fast mode checkbox (saying what it trades and which models have it), first-step CFG, LoRAs."""
    having = ", ".join(f"{c.name} ({c.few_step.steps} steps)" for c in cards if c.few_step is not None)
    return {
        "few_step": Field(
            value=False,
            label="Few-step mode (fast)",
            info="The authors' distilled settings, CFG 1: seconds instead of minutes, slower motion; the "
            "negative prompt is unused at CFG 1 unless CFG runs on the first step. A step-distill LoRA is "
            "merged into the model where it sits whole on the GPU (switching the mode off then reloads it; "
            "under offload it stays an adapter, swapped in place); your LoRAs go beside it (list its file "
            "to set its strength). "
            f"Models: {having or 'none'}.",
        ),
        "first_step_guidance": Field(
            value=None,
            label="CFG on the first step",
            info="0 or empty: off. A scale above 1 (e.g. 3.5) runs CFG with the negative prompt for step 1 "
            "only, then CFG 1: livelier motion for one extra pass.",
        ),
        "loras_text": Field(value="", label="LoRAs", info=LORAS_HELP),
    }


def parse_loras_text(text: str | None) -> list[dict[str, Any]] | None:
    """``name:strength[:expert], ...`` as the request's ``loras`` entries (None when empty)."""
    entries = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, *rest = [p.strip() for p in part.rsplit(":", 2)] if part.count(":") else [part]
        if rest and rest[-1] in EXPERTS and len(rest) == 1 and not _is_number(rest[0]):
            rest = ["1", rest[0]]
        try:
            strength = float(rest[0]) if rest else 1.0
        except ValueError:
            raise ConfigError(f"LoRA {part!r}: write name:strength[:expert], e.g. style:0.8") from None
        entries.append({"name": name, "strength": strength, "expert": rest[1] if len(rest) > 1 else "both"})
    return entries or None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def few_step_values(v: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields of the fast mode and LoRA inputs (absent inputs: the request's defaults). The
    fast mode sets steps, CFG and shift from the card (None here overrides the Sampling sliders)."""
    out: dict[str, Any] = {"few_step": bool(v.get("few_step"))}
    if out["few_step"]:
        out |= {"steps": None, "guidance": None, "flow_shift": None}
    if v.get("first_step_guidance"):
        out["first_step_guidance"] = float(v["first_step_guidance"])
    loras = parse_loras_text(v.get("loras_text"))
    if loras is not None:
        out["loras"] = loras
    return out
