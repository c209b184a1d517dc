"""Small helpers that turn loose user input (UI, API, YAML) into validated dataclasses.

Every config in the project is a dataclass built through :func:`from_mapping`, so unknown keys and bad
values always raise one :class:`ConfigError` whose message names the field and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A request or config value that cannot be used; the message is meant for the user."""


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown and missing fields by name."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(names))}"
        )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.init
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    return cls(**data)


def as_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (whole floats such as 81.0 from a UI number box are accepted) within bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    _check_range(name, number, low, high)
    return number


def as_float(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float within bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    _check_range(name, number, low, high)
    return number


def as_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, options))}; got {value!r}")
    return value


def as_text(name: str, value: Any, *, required: bool = False, max_length: int = 4000) -> str:
    """``value`` as stripped text; ``required`` refuses empty text."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {type(value).__name__}")
    text = value.strip()
    if required and not text:
        raise ConfigError(f"{name} must not be empty")
    if len(text) > max_length:
        raise ConfigError(f"{name} is too long ({len(text)} characters, at most {max_length})")
    return text


def _check_range(name: str, number: float, low: float | None, high: float | None) -> None:
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else (f"at least {low}" if low is not None else f"at most {high}")
        )
        raise ConfigError(f"{name} must be {bounds}, got {number}")


def as_seed(value: Any) -> int:
    """A generation seed: 0 to MAX_SEED, or -1 for "pick one at random when the job runs"."""
    return as_int("seed", value, low=-1, high=MAX_SEED)


def random_seed() -> int:
    """A fresh seed for a request that asked for -1."""
    return random.randint(0, MAX_SEED)
