"""An exception's message without internals: a file error names the file (not its temporary path) and
says what it means, instead of ``[Errno 1094995529] ... '/tmp/gradio/<hash>/clip.mp4'``."""

from __future__ import annotations

from pathlib import PurePath

FILE_HINTS = {
    "Invalid data found when processing input": "not a video this app can read (re-export it as mp4?)",
}


def error_text(exc: BaseException) -> str:
    """``str(exc)``, or for an error about a file (OSError, PyAV's errors) "name: what went wrong"."""
    strerror, filename = getattr(exc, "strerror", None), getattr(exc, "filename", None)
    if not strerror or not filename:
        return str(exc)
    name = PurePath(str(filename)).name
    hint = FILE_HINTS.get(str(strerror))
    return f"{name}: {strerror}" + (f": {hint}" if hint else "")
