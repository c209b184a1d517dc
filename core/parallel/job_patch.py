"""A method of one object swapped for the length of one job, then put back as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """``owner.name`` is ``replacement`` inside the block; after it, an instance attribute that was there
    before (another wrapper) is put back, else ours is dropped so the class's method shows again."""
    original = getattr(owner, name)
    own = name in vars(owner)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)
