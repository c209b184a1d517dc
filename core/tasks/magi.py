"""MAGI-1 tasks: text to video and continuing a clip, for every card whose pipeline is MAGI-1.

They take the ``t2v`` and ``continue`` names for MAGI-1 cards (:data:`core.magi.request.MAGI_PIPELINE`)
with their own request type; the run itself lives in :mod:`core.magi.job`.
"""

from __future__ import annotations

from typing import Any

from core.device_models import Worker
from core.job_run import JobRun
from core.jobs import Job
from core.magi.job import run_magi
from core.magi.request import MAGI_PIPELINE, MagiRequest
from core.tasks.registry import Task, register
from core.validation import from_mapping


class MagiTask(Task):
    """A MAGI-1 job, chunk by chunk with a live preview; the request keeps its task name."""

    request_type = MagiRequest
    pipelines = (MAGI_PIPELINE,)

    def parse(self, data: dict[str, Any]) -> MagiRequest:
        return from_mapping(MagiRequest, data | {"task": self.name}, where=f"MAGI-1 {self.name} request")

    def run(self, worker: Worker, job: Job, request: MagiRequest) -> dict[str, Any]:
        return run_magi(worker, JobRun(request.task, job, request, worker.device))


@register
class MagiTextToVideo(MagiTask):
    name = "t2v"


@register
class MagiContinue(MagiTask):
    name = "continue"
