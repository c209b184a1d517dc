"""The "Speed options" accordion: attention backend, compile, Turbo. Layout and value mapping only."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from core.speed.config import ATTENTION_CHOICES

COMPILE_CHOICES = {"auto": "auto", "on": True, "off": False}
ATTENTION_LABELS = {
    "auto": "auto (fastest for this GPU)",
    "flash4": "FlashAttention-4 (Hopper/Blackwell)",
    "flash": "flash-attn 2",
    "cudnn": "cuDNN SDPA",
    "sdpa": "PyTorch SDPA",
}
TURBO_NOTE = (
    "fp8 linears and 8-bit attention (Ada/Hopper/Blackwell): 12-20% faster than the lossless default on "
    "an H100 (1.6x plain diffusers), with small changes in detail; off = lossless."
)


class SpeedControls(NamedTuple):
    attention: gr.Dropdown
    compile: gr.Radio
    turbo: gr.Checkbox

    @property
    def inputs(self) -> list[gr.components.Component]:
        """The components in the order :func:`speed_dict_from_controls` takes their values."""
        return [self.attention, self.compile, self.turbo]


def build_speed_controls() -> SpeedControls:
    """Lay out the accordion inside the current Blocks context (closed by default)."""
    with gr.Accordion("Speed options", open=False):
        attention = gr.Dropdown(
            choices=[(ATTENTION_LABELS[name], name) for name in ATTENTION_CHOICES],
            value="auto",
            label="Attention",
            info="Unavailable choices fall back to auto; the video's metadata records what ran.",
        )
        compile_choice = gr.Radio(
            choices=list(COMPILE_CHOICES),
            value="auto",
            label="Compile the model",
            info="auto = on for GPUs. The first run compiles (a minute or two), later runs reuse the cache.",
        )
        turbo = gr.Checkbox(value=False, label="Turbo (fp8)", info=TURBO_NOTE)
    return SpeedControls(attention, compile_choice, turbo)


def speed_dict_from_controls(attention: str, compile_choice: str, turbo: bool) -> dict[str, Any]:
    """The controls' values as the mapping ``core.speed.parse_speed_config`` validates."""
    return {
        "attention": attention,
        "compile": COMPILE_CHOICES.get(compile_choice, compile_choice),
        "turbo": turbo,
    }
