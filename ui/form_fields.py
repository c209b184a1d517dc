"""Form inputs whose API type and accepted values agree.

Seeds are plain ``gr.Number`` boxes without rounding (``precision=0`` would run a seed of 1.5 sent through
the API as 2): the core's check refuses a fraction. Radios of numbers offer them as text ("2", "4"), since
the API advertises a radio's choices as text; the handler turns the text back into the number.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


def seed_box(value: int) -> gr.Number:
    """The seed input: whole numbers, -1 for a random one; a fraction reaches the core and is refused."""
    return gr.Number(value=value, label="Seed (-1 = random)")


def number_choice(choices: list[int], value: int, **kwargs: Any) -> gr.Radio:
    """A ``gr.Radio`` offering the numbers ``choices`` as text; :func:`choice_number` reads its value."""
    return gr.Radio(**number_choices(choices, value), **kwargs)


def number_choices(choices: list[int], value: int | None) -> dict[str, Any]:
    """The ``choices`` and ``value`` of a :func:`number_choice` radio offering ``choices`` (for an update)."""
    return {"choices": [str(c) for c in choices], "value": None if value is None else str(value)}


def choice_number(value: str | None) -> int | None:
    """The number a :func:`number_choice` value stands for (None stays None)."""
    return None if value is None else int(value)


def whole(value: Any) -> Any:
    """A whole float from a slider (``9.0``) as an int; anything else unchanged, for the core to check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
