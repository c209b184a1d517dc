"""The upscale task: FlashVSR or a Real-ESRGAN network over a video, streamed (:mod:`core.upscale.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.device_models import Worker
from core.interpolate import interpolate_video
from core.job_run import JobRun
from core.jobs import Job
from core.outputs import sidecar_path, write_json_atomic
from core.tasks.registry import Task, register
from core.upscale.request import UpscaleRequest
from core.upscale.run import run_upscale
from core.validation import ConfigError


@register
class UpscaleTask(Task):
    """Upscaling on one device, or FlashVSR's DiT split over two (``pipeline_gpus`` 2)."""

    name = "upscale"
    request_type = UpscaleRequest

    def workers_needed(self, request: UpscaleRequest) -> int:
        return request.pipeline_gpus

    def check_devices(self, request: UpscaleRequest, devices: list[torch.device]) -> None:
        """A split over 2 GPUs needs a studio with 2 devices (tests run it on two CPU workers)."""
        if request.pipeline_gpus <= len(devices):
            return
        device = devices[0] if devices else None
        where = f"runs on one ({device})" if device and device.type == "cuda" else f"has no GPU ({device})"
        raise ConfigError(
            f"splitting an upscale over 2 GPUs (split_gpus / pipeline_gpus 2) needs 2 GPUs; this studio "
            f"{where}: turn the split off"
        )

    def run(self, worker: Worker, job: Job, request: UpscaleRequest) -> dict[str, Any]:
        record = run_upscale(worker, JobRun(self.name, job, request, worker.device))
        if request.interpolate and record.get("status") == "done":
            interpolate_output(worker, job, Path(record["path"]), request.interpolate, record)
        return record


def interpolate_output(worker: Worker, job: Job, path: Path, method: str, record: dict[str, Any]) -> None:
    """Double ``path``'s frames and fps in place with ``method`` (on the worker's device); ``record``
    (embedded and in the sidecar) gets its ``interpolation`` entry and the new frames and fps."""
    saved = record.pop("path")
    interpolate_video(
        path,
        path,
        method,
        record,
        lambda n: job.report(f"interpolating frames ({method})", n, 0),
        settings=worker.settings,
        device=worker.device,
    )
    write_json_atomic(sidecar_path(path), record)
    record["path"] = saved
