"""Every task of the studio, registered by name (:mod:`core.tasks.registry`).

Importing this package registers them all: text to video (Wan family), image to video (Wan family),
continuation (SkyReels-V2 DF), MAGI-1 (text to video and continuation), upscale (FlashVSR, Real-ESRGAN)
and the long-video chain. A new task is a module here with a request type and a
:class:`~core.tasks.registry.Task` subclass under ``@register``, imported below.
"""

from core.tasks import chain, continuation, i2v, magi, t2v, upscale
from core.tasks.registry import Task, parse_request, request_types, task_for, task_named, task_names

__all__ = [
    "Task",
    "chain",
    "continuation",
    "i2v",
    "magi",
    "parse_request",
    "request_types",
    "t2v",
    "task_for",
    "task_named",
    "task_names",
    "upscale",
]
