"""A worker-process executor for the preview relay test, kept free of torch so its process starts fast."""

from __future__ import annotations

from pathlib import Path

from core.jobs import Job
from core.settings import Settings


def preview_executor(settings: Settings, gpu: int | None):
    """A job that shows two previews (as a MAGI-1 job does after each chunk), reporting a step after each."""

    def execute(job: Job) -> dict:
        for count in (1, 2):
            path = Path(settings.outputs_dir) / f"{job.id}-{count}.mp4"
            path.write_bytes(b"mp4")
            job.show_preview(str(path))
            job.report("denoising", count, 2)
        return {"status": "done"}

    return execute
