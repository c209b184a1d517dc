"""The task registry: each task registers a :class:`Task` under its name; parsing, running, dispatching,
batch and chain look tasks up here instead of testing request types.

A request names its task (``"task": "t2v"``, ``"continue"``, ``"upscale"``, ``"chain"``). A task may claim a
name for the cards of some pipelines only (MAGI-1 runs ``t2v`` and ``continue`` with its own request type):
such a task wins over the name's default task for those cards.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import torch

from core.device_models import Worker
from core.jobs import Job
from core.validation import ConfigError, from_mapping
from weights.registry import load_cards


class Task:
    """One kind of job: its request type and how to run it. Subclasses set the class
    attributes and :meth:`run`; the defaults suit a job that runs on one device."""

    name: ClassVar[str]
    """The request's ``task`` field."""
    request_type: ClassVar[type]
    pipelines: ClassVar[tuple[str, ...]] = ()
    """Card pipelines this task takes ``name`` for; () makes it the name's default task."""
    splittable: ClassVar[bool] = False
    """Whether one job may be split over idle GPUs (CFG / context parallel)."""

    def parse(self, data: dict[str, Any]) -> Any:
        """A validated request from ``data`` (``task`` already removed); ConfigError says what is wrong."""
        return from_mapping(self.request_type, data, where=f"{self.name} request")

    def run(self, worker: Worker, job: Job, request: Any) -> dict[str, Any]:
        """Run ``request`` (with a concrete seed) on ``worker``; returns the job's record."""
        raise NotImplementedError

    def parts(self, request: Any) -> list[Any]:
        """The single-model requests the job runs, validated (one, except for a recipe of several)."""
        return [request]

    def workers_needed(self, request: Any) -> int:
        """How many devices the job takes at once."""
        return 1

    def check_devices(self, request: Any, devices: list[torch.device]) -> None:
        """Refuse at submit (ConfigError) what a studio with ``devices`` cannot run."""
        if self.workers_needed(request) > len(devices):
            raise ConfigError(
                f"this {self.name} job needs {self.workers_needed(request)} devices; the studio has "
                f"{len(devices)}"
            )


_TASKS: dict[tuple[str, str | None], Task] = {}
_BY_TYPE: dict[type, Task] = {}
TaskT = TypeVar("TaskT", bound=type[Task])


def register(cls: TaskT) -> TaskT:
    """Class decorator: register one instance of ``cls`` under its name (and pipelines)."""
    task = cls()
    for pipeline in cls.pipelines or (None,):
        key = (cls.name, pipeline)
        if key in _TASKS:
            raise ValueError(f"task {key} registered twice")
        _TASKS[key] = task
    _BY_TYPE[cls.request_type] = task
    return cls


def task_names() -> list[str]:
    """Every task name, in registration order."""
    return list(dict.fromkeys(name for name, _ in _TASKS))


def task_named(name: str, model: Any = None) -> Task:
    """The task that runs ``name`` for ``model`` (a card id): the one claiming its card's pipeline, else
    the name's default."""
    card = load_cards().get(model) if isinstance(model, str) else None
    task = _TASKS.get((name, card.pipeline)) if card is not None else None
    task = task or _TASKS.get((name, None))
    if task is None:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return task


def task_for(request: Any) -> Task:
    """The task of a parsed request."""
    try:
        return _BY_TYPE[type(request)]
    except KeyError:
        raise TypeError(f"no task runs {type(request).__name__}") from None


def parse_request(data: dict[str, Any]) -> Any:
    """Turn a dict from the UI, API or a file into a validated request; ``task`` (default ``t2v``) and
    the model pick the task."""
    data = dict(data)
    name = data.pop("task", "t2v")
    return task_named(name, data.get("model")).parse(data)


def request_types() -> dict[str, type]:
    """The default request type of every task name."""
    return {name: task.request_type for (name, pipeline), task in _TASKS.items() if pipeline is None}
