"""User-facing error text: the project's own errors show their message alone, unexpected ones keep their
class name (it helps bug reports)."""

from __future__ import annotations

from collections.abc import Sequence

from core.error_text import error_text
from core.parallel.pool import WorkerCrashedError
from core.parallel.split import SplitOutOfMemoryError
from core.validation import ConfigError
from weights.download import DownloadError
from weights.sources import SourceError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,  # with ModelMissingError, NotEnoughDiskError
    DownloadError,
    SourceError,
    SplitOutOfMemoryError,
    WorkerCrashedError,
)
"""The project's errors whose message is written for the user: shown without the class name."""


def _subclass_names(classes: Sequence[type]) -> set[str]:
    names: set[str] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def readable_error(exc: BaseException) -> str:
    """``exc``'s message; an unexpected exception keeps its class name (it helps bug reports)."""
    text = error_text(exc)
    if isinstance(exc, USER_ERRORS) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def job_error_message(error: str | None) -> str:
    """A failed job's error (``"ClassName: message"``), without the class name for :data:`USER_ERRORS`."""
    if not error:
        return "the job failed"
    name, sep, message = error.partition(": ")
    return message if sep and message and name in _subclass_names(USER_ERRORS) else error
