"""The worker process of a :class:`core.parallel.pool.WorkerPool`: one GPU, one Runner, jobs from a queue.

Kept free of torch imports at module level, so fake executors in tests start fast. The pool starts the
process with ``CUDA_VISIBLE_DEVICES`` already set (:func:`core.parallel.devices.gpus_for_child`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from core.jobs import Executor, JobCancelledError
from core.parallel.remote_job import RemoteJob
from core.settings import Settings

ExecutorFactory = Callable[[Settings, "int | None"], Executor]


def runner_executor(settings: Settings, gpu: int | None) -> Executor:
    """A :class:`core.runner.Runner` on the one visible GPU (or the CPU when ``gpu`` is None)."""
    import torch

    from core.runner import Runner

    device = torch.device("cuda", 0) if gpu is not None else torch.device("cpu")
    return Runner(settings, device).execute


def worker_main(
    gpu: int | None,
    settings: Settings,
    inbox: Any,
    events: Any,
    cancel_value: Any,
    make_executor: ExecutorFactory = runner_executor,
) -> None:
    """Serve ``(number, job_id, request)`` messages from ``inbox`` until None, one at a time.

    The worker sees its GPU as ``cuda:0`` and, when it has one, its partner GPU as ``cuda:1`` (used only by
    jobs the dispatcher gave both, e.g. an upscale split over two GPUs)."""
    execute = make_executor(settings, gpu)
    while (message := inbox.get()) is not None:
        number, job_id, request = message
        job = RemoteJob(job_id, number, request, events, cancel_value)
        try:
            record = execute(job)
        except JobCancelledError:
            events.put(("cancelled", number))
        except Exception as exc:  # reported as this job's failure; the worker serves the next one
            traceback.print_exc()
            events.put(("failed", number, f"{type(exc).__name__}: {exc}"))
        else:
            events.put(("done", number, record))
