"""What a form input is, as data: the facade hands these to the UI, which builds and updates its
components from them (a field's name is the tab's API parameter name, or a group's name)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

SPEEDS = ("Off", "Fast", "Faster")
"""The Speed choices of every step or chunk cache: Off, then the presets."""


@dataclass(frozen=True)
class Field:
    """An input's (or a group's) properties; None leaves a property as it is (an update) or at Gradio's
    default (a new component). ``number_text``: numbers offered as text choices ("2", "4")."""

    value: Any = None
    label: str | None = None
    info: str | None = None
    visible: bool | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: list[Any] | None = None
    keep_value: bool = False
    """Set ``value`` even when it is None (an empty threshold, "no value")."""

    def props(self) -> dict[str, Any]:
        """The properties that are set, as keyword arguments for a component or ``gr.update``."""
        found = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "keep_value" and getattr(self, f.name) is not None
        }
        return found | ({"value": None} if self.keep_value else {})


Form = dict[str, Field]
"""A tab's fields by name."""


def shown(visible: bool) -> Field:
    """A group or input that is only shown or hidden."""
    return Field(visible=visible)


def number_choices(numbers: list[int], value: int | None, **props: Any) -> Field:
    """A radio of numbers offered as text (the API advertises a radio's choices as text)."""
    return Field(choices=[str(n) for n in numbers], value=None if value is None else str(value), **props)


def choice_number(value: str | None) -> int | None:
    """The number a :func:`number_choices` value stands for (None stays None)."""
    return None if value is None else int(value)


def whole(value: Any) -> Any:
    """A whole float from a slider (``9.0``) as an int; anything else unchanged, for the request to check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
