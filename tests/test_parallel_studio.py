"""How the Studio spreads jobs: one in-process runner, or per job a free worker process or a split.

Two CPU "GPUs": worker processes with the real Runner, and a 2-rank gloo split group.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
import torch

from core.jobs import Job, JobCancelledError, JobStatus
from core.outputs import sidecar_path
from core.parallel.dispatch import GpuDispatcher
from core.parallel.split import SplitGroup
from core.settings import Settings
from core.studio import Studio
from core.tasks import parse_request
from core.validation import ConfigError
from core.video_io import probe_video, read_record, write_video

pytest_plugins = ["tests.conftest_parallel"]

TINY = {"model": "tiny-wan", "prompt": "a cat", "steps": 1}


def finish(studio: Studio, job: Job) -> Job:
    for _ in studio.follow(job, poll_s=0.2):
        pass
    assert job.status == JobStatus.DONE, job.error
    return job


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_one_device_runs_jobs_in_process(settings: Settings) -> None:
    studio = Studio(settings)
    try:
        assert studio.dispatcher is None
        assert studio.describe_workers() == "One worker on cpu."
        assert [(w.name, w.state, w.job_id) for w in studio.worker_status()] == [("CPU", "idle", None)]
    finally:
        studio.shutdown()


def test_multi_gpu_choice_is_validated() -> None:
    assert parse_request(TINY).multi_gpu == "auto"
    with pytest.raises(ConfigError, match="multi_gpu must be one of auto, one, split"):
        parse_request(TINY | {"multi_gpu": "all"})


@pytest.fixture
def two_cpu_studio(
    parallel_settings: Settings, split_group: SplitGroup, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Studio]:
    """A Studio on two CPU "GPUs": light worker processes (no torch, they start fast) and real gloo split
    ranks with the tiny model (the session's warm group, as the dispatcher would start it)."""
    from tests.conftest_parallel import rank_setup_for_tests
    from tests.test_parallel_pool import request_steps_executor

    monkeypatch.setattr("core.studio.pick_devices", lambda hardware, space: [torch.device("cpu")] * 2)
    light = partial(GpuDispatcher, make_executor=request_steps_executor, rank_setup=rank_setup_for_tests)
    monkeypatch.setattr("core.studio.GpuDispatcher", light)
    studio = Studio(parallel_settings)
    studio.dispatcher.split = split_group
    try:
        yield studio
    finally:
        studio.shutdown()


def test_a_one_gpu_jobs_plan_is_in_its_mp4_as_in_its_sidecar(two_cpu_studio: Studio) -> None:
    job = finish(two_cpu_studio, two_cpu_studio.submit(TINY | {"seed": 8, "multi_gpu": "one"}))
    path = Path(job.result["path"])
    sidecar = json.loads(sidecar_path(path).read_text())
    assert read_record(path)["gpu_plan"] == sidecar["gpu_plan"] == job.result["gpu_plan"]
    assert sidecar["gpu_plan"]["reason"] == "one GPU asked for"
    assert sidecar["gpu_plan"]["worker"] in ("CPU worker 0", "CPU worker 1")
    assert read_record(path)["pid"] in two_cpu_studio.dispatcher.pool.pids


def test_a_split_out_of_memory_with_no_level_left_for_it_runs_on_one_gpu(
    two_cpu_studio: Studio, progress_lines: dict[str, list[str]]
) -> None:
    """Ulysses at level 3: rank 1 runs out of memory, level 4 (DiT offload) refuses context parallel."""
    two_cpu_studio.dispatcher.min_split_tokens = 0
    oom = {"prompt": "a cat [oom on rank 1 below level 7]", "guidance": 1.0, "memory_level": "3", "seed": 9}
    job = finish(two_cpu_studio, two_cpu_studio.submit(TINY | oom))
    seen = progress_lines[job.id]
    plan = job.result["gpu_plan"]
    assert plan["mode"] == "task" and plan["worker"] in ("CPU worker 0", "CPU worker 1")
    assert plan["reason"].startswith(
        "the split ran out of GPU memory at level 3 (CFG one at a time) on rank 1: CUDA out of memory "
        "(simulated); level 4 does not fit this split"
    )
    assert read_record(Path(job.result["path"]))["gpu_plan"] == plan
    assert any(text.startswith("CPU ranks 0-1 · denoising 1/1") for text in seen), "rank 0 went on"
    worker = plan["worker"]
    assert any(text.startswith(f"{worker} · one GPU: the split ran out of GPU memory") for text in seen)
    assert any(text.startswith(f"{worker} · denoising") for text in seen)
    assert [w.state for w in two_cpu_studio.worker_status()] == ["idle", "idle"]


def test_the_planner_places_each_job_on_a_worker_or_a_split(
    two_cpu_studio: Studio, progress_lines: dict[str, list[str]]
) -> None:
    studio, dispatcher = two_cpu_studio, two_cpu_studio.dispatcher
    assert "splits a big text- or image-to-video job" in studio.describe_workers()
    pair = [studio.submit(TINY | {"seed": i, "steps": 4}) for i in (1, 2)]
    watched = set()
    while not all(job.finished for job in pair):
        watched |= {(w.name, w.job_id) for w in studio.worker_status() if w.state == "running"}
        time.sleep(0.05)
    for job in pair:
        finish(studio, job)
    plans = [job.result["gpu_plan"] for job in pair]
    assert [p["mode"] for p in plans] == ["task", "task"]
    assert {p["worker"] for p in plans} == {"CPU worker 0", "CPU worker 1"}
    assert watched == {(p["worker"], job.id) for p, job in zip(plans, pair, strict=True)}
    assert {job.result["pid"] for job in pair} == set(dispatcher.pool.pids)
    workers = dispatcher.pool.pids

    blank = np.zeros((2, 32, 32, 3), np.uint8)
    clip = write_video(dispatcher.settings.outputs_dir.parent / "clip.mp4", blank, 8)
    upscale = {"task": "upscale", "model": "tiny-flashvsr", "video": str(clip), "pipeline_gpus": 2}
    pipeline = studio.submit(upscale)
    both = set()
    while not pipeline.finished:
        both |= {(w.name, w.job_id) for w in studio.worker_status() if w.state == "running"}
        time.sleep(0.05)
    finish(studio, pipeline)
    assert both == {("CPU worker 0", pipeline.id), ("CPU worker 1", pipeline.id)}
    reason = pipeline.result["gpu_plan"]["reason"]
    assert "FlashVSR's blocks split over CPU worker" in reason and reason.count("CPU worker") == 2
    assert pipeline.result["pid"] not in dispatcher.pool.pids, "its model spans both GPUs: restarted"

    small = finish(studio, studio.submit(TINY | {"seed": 3}))
    seen = progress_lines[small.id]
    assert "too small a job" in small.result["gpu_plan"]["reason"]
    assert any(text.startswith(small.result["gpu_plan"]["worker"] + " · denoising 1/1") for text in seen)

    dispatcher.min_split_tokens = 0
    alone = finish(studio, studio.submit(TINY | {"seed": 4}))
    seen = progress_lines[alone.id]
    assert alone.result["gpu_plan"]["mode"] == "split" and alone.result["parallel"]["cfg"] == 2
    assert any(text.startswith("CPU ranks 0-1 · split over 2 ranks (cfg 2): one job") for text in seen)
    assert any(text.startswith("CPU ranks 0-1 · denoising") for text in seen)
    assert probe_video(Path(alone.result["path"])).frames == 9
    assert read_record(Path(alone.result["path"]))["gpu_plan"] == alone.result["gpu_plan"]
    assert set(dispatcher.pool.pids).isdisjoint(workers), "workers that held a model are restarted"
    ranks = dispatcher.split.pids

    one = finish(studio, studio.submit(TINY | {"seed": 5, "multi_gpu": "one"}))
    assert one.result["gpu_plan"]["reason"] == "one GPU asked for"
    assert alive(ranks) == [], "the split ranks are closed before a worker runs again"
    first_block = {"method": "first_block", "threshold": 0.1}
    no_fit = {"seed": 6, "multi_gpu": "split", "guidance": 1.0, "cache": first_block}
    forced = finish(studio, studio.submit(TINY | no_fit))
    assert forced.result["gpu_plan"]["mode"] == "task"
    assert "no split fits" in forced.result["gpu_plan"]["reason"]
    workers = dispatcher.pool.pids + ranks
    studio.shutdown()
    assert alive(workers) == [] and os.getpid() not in workers


def test_a_forced_split_reserves_the_gpus_and_a_waiting_job_can_be_cancelled(
    parallel_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim logic alone (no processes): three CPU "GPUs", one busy."""
    monkeypatch.setattr("core.parallel.dispatch.WorkerPool", lambda *args: SimpleNamespace(workers=[]))
    dispatcher = GpuDispatcher(parallel_settings, [None, None, None], lambda: 0)
    dispatcher.min_split_tokens = 0
    busy, split, other = (Job(parse_request(TINY | {"multi_gpu": m})) for m in ("one", "split", "auto"))
    dispatcher._running[2] = busy
    plans: dict[str, object] = {}

    def claim(name: str, index: int, job: Job) -> None:
        try:
            plans[name] = dispatcher._claim(index, job)
        except JobCancelledError as exc:
            plans[name] = exc

    threads = [
        threading.Thread(target=claim, args=("split", 0, split)),
        threading.Thread(target=claim, args=("other", 1, other)),
    ]
    threads[0].start()
    while dispatcher._reserved is not split:
        time.sleep(0.01)
    threads[1].start()
    while other.progress.stage != "waiting for the GPUs":
        time.sleep(0.01)
    assert [w.state for w in dispatcher.status()] == ["idle", "idle", "running"]
    other.cancel()
    threads[1].join(5)
    assert isinstance(plans["other"], JobCancelledError)
    dispatcher._release(busy)
    threads[0].join(5)
    assert plans["split"].mode == "split" and plans["split"].config.ring == 3
    assert [w.state for w in dispatcher.status()] == ["split"] * 3
    dispatcher._release(split)
    assert [w.state for w in dispatcher.status()] == ["idle"] * 3


class FakeSplitGroup:
    """A split group that records where it runs and what the queue view (``status``) shows meanwhile."""

    def __init__(self, world_size: int, gpus: tuple[int, ...] | None, status) -> None:
        self.world_size, self.gpus, self.status = world_size, gpus, status
        self.closed, self.seen = False, []

    def run(self, job: Job, request, modes, placement: str = "") -> dict:
        self.seen = [w.state for w in self.status()]
        job.report("denoising", 1, 1)
        return {"status": "done", "gpu_plan": {"mode": "split", "reason": placement}}

    def close(self) -> None:
        self.closed = True


def test_a_split_takes_only_the_idle_gpus_and_leaves_the_busy_worker_alone(
    parallel_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three fake GPUs, GPU 1 busy with its own job, every worker with a model loaded."""
    restarted: list[int] = []
    made: list[FakeSplitGroup] = []

    def split_group(settings, world_size, modes, gpus=None, rank_setup=None) -> FakeSplitGroup:
        made.append(FakeSplitGroup(world_size, gpus, lambda: dispatcher.status()))
        return made[-1]

    workers = [SimpleNamespace(restart=partial(restarted.append, i)) for i in range(3)]
    monkeypatch.setattr("core.parallel.dispatch.WorkerPool", lambda *args: SimpleNamespace(workers=workers))
    monkeypatch.setattr("core.parallel.dispatch.SplitGroup", split_group)
    dispatcher = GpuDispatcher(parallel_settings, [0, 1, 2], lambda: 0)
    dispatcher.min_split_tokens = 0
    warm = dispatcher.split = FakeSplitGroup(2, (0, 1), dispatcher.status)
    busy = Job(parse_request(TINY | {"multi_gpu": "one"}))
    dispatcher._running[1] = busy
    dispatcher._loaded = {0, 1, 2}
    lone = Job(parse_request(TINY | {"memory_level": "0", "seed": 1}))
    stages: list[str] = []
    lone.report = lambda stage, *args: stages.append(stage)  # type: ignore[method-assign]

    record = dispatcher._execute(2, lone)

    assert warm.closed and made == [dispatcher.split]
    assert (made[0].world_size, made[0].gpus) == (2, (0, 2))
    assert made[0].seen == ["split", "running", "split"]
    assert "GPUs 0+2 · denoising" in stages and record["gpu_plan"]["mode"] == "split"
    assert sorted(restarted) == [0, 2], "only the split's workers are emptied"
    assert dispatcher._running == {1: busy} and dispatcher._loaded == {1}
    assert [w.state for w in dispatcher.status()] == ["idle", "running", "idle"]


def test_a_task_job_that_fails_before_its_worker_runs_it_frees_the_worker(
    parallel_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim is released on any failure after it (here the first progress message raises)."""
    monkeypatch.setattr("core.parallel.dispatch.WorkerPool", lambda *args: SimpleNamespace(workers=[]))
    dispatcher = GpuDispatcher(parallel_settings, [None, None], lambda: 0)
    job = Job(parse_request(TINY | {"multi_gpu": "one"}))

    def report(stage: str, *args) -> None:
        raise RuntimeError("progress channel closed")

    job.report = report  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="progress channel closed"):
        dispatcher._execute(0, job)
    assert dispatcher._running == {} and [w.state for w in dispatcher.status()] == ["idle", "idle"]


def test_one_gpu_that_is_not_cuda_0_is_the_current_device_of_the_queue_thread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--gpus 1``: the Runner in the queue's thread sets cuda:1 before it runs anything (CUDA faked)."""
    from core.tasks.t2v import T2VTask

    calls: list[tuple[torch.device, str]] = []
    monkeypatch.setattr("core.studio.pick_devices", lambda hardware, space: [torch.device("cuda", 1)])
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda device: calls.append((device, threading.current_thread().name))
    )
    monkeypatch.setattr(
        T2VTask, "run", lambda self, worker, job, request: {"status": "done", "calls": list(calls)}
    )
    studio = Studio(settings)
    try:
        job = finish(studio, studio.submit(TINY))
    finally:
        studio.shutdown()
    assert job.result["calls"] == [(torch.device("cuda", 1), "worker-0")]


def test_an_image_to_video_job_alone_splits_over_the_idle_gpus(
    two_cpu_studio: Studio, tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (96, 64), (200, 40, 40)).save(tmp_path / "start.png")
    two_cpu_studio.dispatcher.min_split_tokens = 0
    data = {"task": "i2v", "model": "tiny-wan-i2v", "prompt": "a cat", "steps": 1, "seed": 2}
    job = finish(two_cpu_studio, two_cpu_studio.submit(data | {"image": str(tmp_path / "start.png")}))
    assert job.result["task"] == "i2v" and job.result["gpu_plan"]["mode"] == "split"
    assert job.result["parallel"]["cfg"] == 2 and job.result["image"]["name"] == "start.png"
    assert probe_video(Path(job.result["path"])).frames == 9
