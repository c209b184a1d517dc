"""The runner: executes one job on one device, from a validated request to an mp4 and its record."""

from __future__ import annotations

from typing import Any

import torch

from core.device_models import DeviceModels
from core.jobs import Job
from core.settings import Settings
from core.tasks import task_for


class Runner:
    """Runs jobs on ``device``; what is loaded there stays loaded between jobs (:attr:`models`)."""

    def __init__(self, settings: Settings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.models = DeviceModels(device, settings)

    def execute(self, job: Job) -> dict[str, Any]:
        """Run ``job`` with its request's task and return its record (also written to the mp4 and a sidecar).

        The runner's GPU becomes this thread's current device first, so kernels and allocations that use the
        current device (not ``self.device``) land on it too."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        return task_for(job.request).run(self, job, job.request)
