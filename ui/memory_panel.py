"""The memory level picker and the estimate shown before Generate (layout only; wiring lives in ui/app.py)."""

from __future__ import annotations

import gradio as gr

from core.memory.levels import AUTO, LEVELS
from core.memory.planner import MemoryPlan


def level_choices() -> list[tuple[str, str]]:
    """Dropdown entries (label, value): "Auto" then each level; values are "auto" or the level as text."""
    levels = [(f"{lv.number}: {lv.label}", str(lv.number)) for lv in LEVELS]
    return [("Auto (pick from free memory)", AUTO), *levels]


def build_memory_panel() -> tuple[gr.Dropdown, gr.Markdown]:
    """A level dropdown (default Auto) and a markdown box for :func:`describe_plan`; call inside gr.Blocks."""
    dropdown = gr.Dropdown(
        choices=level_choices(),
        value=AUTO,
        label="Memory level",
        info="Higher levels use less GPU memory and run slower. Auto picks the lowest level that fits.",
    )
    estimate = gr.Markdown("")
    return dropdown, estimate


def describe_plan(plan: MemoryPlan) -> str:
    """Markdown for the estimate box: the level, the expected peaks against what is free, and why."""
    level = LEVELS[plan.level]
    icon = "✅" if plan.fits else "⚠️"
    if plan.free_vram_gb is None:
        memory = f"RAM ~{plan.ram_gb:.1f} GB of {plan.ram_available_gb:.1f} GB available"
    else:
        memory = (
            f"GPU ~{plan.vram_gb:.1f} GB of {plan.free_vram_gb:.1f} GB free · "
            f"RAM ~{plan.ram_gb:.1f} GB of {plan.ram_available_gb:.1f} GB available"
        )
    who = "auto" if plan.chosen_by == "auto" else "your choice"
    return f"{icon} **Memory level {level.number}: {level.label}** ({who}) — {memory}\n\n{plan.reason}"
