"""GPU checks of the spine (skipped on machines without CUDA): the runner on cuda in bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.jobs import Job, JobQueue, JobStatus
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request
from core.video_io import probe_video

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_runner_makes_a_video_on_the_gpu_in_bf16(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cuda", 0))
    queue = JobQueue([runner.execute])
    job = queue.submit(parse_request({"model": "tiny-wan", "prompt": "a cat", "steps": 3, "seed": 1}))
    version = -1
    while not job.finished:
        version = job.wait_for_change(version, 1.0)
    queue.shutdown()
    assert job.status == JobStatus.DONE, job.error
    assert job.result["dtype"] == "bfloat16" and job.result["device"] == "cuda:0"
    assert 0 < job.result["peak_memory_gb"] < 2
    assert probe_video(Path(job.result["path"])).frames == 9
    request = job.request
    pipe = runner.models.get(request.card, settings.models_dir / "tiny-wan", 0, variant=request.speed_config)
    assert pipe.transformer.device.type == "cuda"
    speed = job.result["speed"]
    assert speed["lossless"] and speed["compile"]["on"], speed
    print("attention:", speed["attention"], "compile:", speed["compile"])


def pci_id(index: int) -> str:
    """The PCI bus and device id of visible GPU ``index``: which physical GPU it is."""
    properties = torch.cuda.get_device_properties(index)
    return f"{properties.pci_bus_id}:{properties.pci_device_id}"


def gpu_identity_executor(settings: Settings, gpu: int | None):
    """A worker executor that names the physical GPU its ``cuda:0`` is."""

    def execute(job) -> dict:
        return {"status": "done", "gpu": gpu, "bus": pci_id(0)}

    return execute


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_each_gpu_worker_runs_on_its_own_gpu(tmp_path: Path) -> None:
    """Two workers, each on a different physical GPU: the one each parent index names."""
    from core.parallel.pool import WorkerPool

    pool = WorkerPool(Settings(outputs_dir=tmp_path), [0, 1], make_executor=gpu_identity_executor)
    try:
        records = [worker.execute(Job({})) for worker in pool.workers]
    finally:
        pool.shutdown()
    assert [record["bus"] for record in records] == [pci_id(0), pci_id(1)]
