"""One request over 2 CPU processes (gloo): CFG and context parallel give the single-process frames."""

from __future__ import annotations

import os
import queue
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
import torch

from core.caches import apply_cache
from core.jobs import Job, JobCancelledError
from core.parallel.split import SplitGroup, run_split
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import generate_t2v
from core.validation import ConfigError
from core.video_io import probe_video, read_record
from weights.progress import DownloadProgress

pytest_plugins = ["tests.conftest_parallel"]

REQUEST = {"model": "tiny-wan", "prompt": "a red car on a street", "steps": 3, "seed": 7, "frames": 9}


@pytest.fixture(scope="module")
def reference(parallel_settings: Settings) -> tuple[dict, np.ndarray]:
    """The same request through the plain single-process Runner, and its raw frames."""
    request = parse_request(REQUEST)
    runner = Runner(parallel_settings, torch.device("cpu"))
    record = runner.execute(Job(request))
    pipe = runner.models.get(request.card, parallel_settings.models_dir / "tiny-wan")
    return record, generate_t2v(pipe, request, Job(request))


@pytest.mark.parametrize(
    ("modes", "degrees", "tolerance"),
    [
        (("cfg",), {"cfg": 2, "ulysses": 1, "ring": 1}, 0.0),
        (("ulysses",), {"cfg": 1, "ulysses": 2, "ring": 1}, 1e-5),
        (("ring",), {"cfg": 1, "ulysses": 1, "ring": 2}, 1e-3),
    ],
)
def test_split_matches_single_process(
    split_group: SplitGroup, reference: tuple, modes: tuple, degrees: dict, tolerance: float
) -> None:
    reference_record, reference_frames = reference
    job = Job(parse_request(REQUEST))
    record = split_group.run(job, job.request, modes)
    assert record["parallel"] == {"world_size": 2, **degrees}
    assert set(reference_record) <= set(record) and record["seed"] == reference_record["seed"] == 7
    path = Path(record["path"])
    assert read_record(path)["parallel"] == record["parallel"]
    assert probe_video(path).frames == 9
    frames = np.load(path.with_suffix(".npy"))
    assert frames.shape == reference_frames.shape == (9, 48, 64, 3)
    assert np.abs(frames - reference_frames).max() <= tolerance
    assert job.progress.stage == "writing video"


def test_cancel_stops_every_rank_and_the_group_serves_on(split_group: SplitGroup) -> None:
    job = Job(parse_request(REQUEST | {"steps": 40}))

    def cancel_at_first_step() -> None:
        version = -1
        while job.progress.stage != "denoising":
            version = job.wait_for_change(version, 1.0)
        job.cancel()

    canceller = threading.Thread(target=cancel_at_first_step)
    canceller.start()
    with pytest.raises(JobCancelledError):
        split_group.run(job, job.request, ("cfg",))
    canceller.join()
    assert job.progress.step < 40
    again = Job(parse_request(REQUEST))
    assert split_group.run(again, again.request, ("cfg",))["status"] == "done"
    assert all(psutil.pid_exists(pid) for pid in split_group.pids)


def test_a_dead_rank_fails_the_job_and_the_next_job_gets_a_fresh_group(split_group: SplitGroup) -> None:
    job = Job(parse_request(REQUEST | {"steps": 200}))
    old = split_group.pids

    def kill_rank_1_at_first_step() -> None:
        version = -1
        while job.progress.stage != "denoising":
            version = job.wait_for_change(version, 1.0)
        os.kill(old[1], signal.SIGKILL)

    killer = threading.Thread(target=kill_rank_1_at_first_step)
    killer.start()
    with pytest.raises(RuntimeError, match="rank"):
        split_group.run(job, job.request, ("cfg",))
    killer.join()
    assert not any(psutil.pid_exists(pid) for pid in old)
    again = Job(parse_request(REQUEST))
    assert split_group.run(again, again.request, ("cfg",))["status"] == "done"
    assert set(split_group.pids).isdisjoint(old)


def test_a_rank_out_of_memory_restarts_every_rank_one_level_up(split_group: SplitGroup) -> None:
    request = parse_request(REQUEST | {"prompt": "a red car [oom on rank 1 below level 1]"})
    job, seen = Job(request), []
    report = job.report
    job.report = lambda stage, *args: (seen.append(stage), report(stage, *args))
    old = split_group.pids
    record = split_group.run(job, request, ("cfg",), placement="split asked for")
    retry = [stage for stage in seen if stage.startswith("Split out of GPU memory")]
    assert retry == [
        "Split out of GPU memory at level 0 (all on GPU) on rank 1: CUDA out of memory (simulated); "
        "retrying it once at level 1 (VAE tiling)"
    ]
    assert record["status"] == "done" and record["memory_level"] == 1
    reason = record["gpu_plan"]["reason"]
    assert reason.startswith("split asked for; out of GPU memory at level 0")
    assert reason.endswith("retried at level 1")
    assert read_record(Path(record["path"]))["gpu_plan"] == record["gpu_plan"]
    assert not any(psutil.pid_exists(pid) for pid in old), "ranks left in a collective are not reused"
    assert seen.count("denoising") > 1 and seen[-1] == "writing video"


def test_impossible_splits_are_refused_before_any_process_starts(parallel_settings: Settings) -> None:
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(ConfigError, match="guidance"):
        run_split(parse_request(REQUEST | {"guidance": 1.0}), parallel_settings, 2, ("cfg",))
    with pytest.raises(ConfigError, match="heads"):
        run_split(parse_request(REQUEST), parallel_settings, 4, ("ulysses",))
    with pytest.raises(ConfigError, match="even"):
        run_split(parse_request(REQUEST), parallel_settings, 3, ("cfg",))
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children


def test_cfg_and_ulysses_together_on_four_ranks(parallel_settings: Settings, reference: tuple) -> None:
    from tests.conftest_parallel import rank_setup_for_tests

    with SplitGroup(parallel_settings, 4, ("cfg", "cp"), rank_setup=rank_setup_for_tests) as group:
        job = Job(parse_request(REQUEST))
        record = group.run(job, job.request, ("cfg", "cp"))
        pids = group.pids
    assert record["parallel"] == {"world_size": 4, "cfg": 2, "ulysses": 2, "ring": 1}
    frames = np.load(Path(record["path"]).with_suffix(".npy"))
    assert np.abs(frames - reference[1]).max() <= 1e-5
    assert not any(psutil.pid_exists(pid) for pid in pids)


def test_a_step_cache_and_memory_level_run_on_cfg_ranks_as_on_one_gpu(
    split_group: SplitGroup, parallel_settings: Settings
) -> None:
    request = parse_request(
        REQUEST | {"steps": 6, "memory_level": "1", "cache": {"method": "teacache", "preset": "faster"}}
    )
    runner = Runner(parallel_settings, torch.device("cpu"))
    pipe = runner.models.get(request.card, parallel_settings.models_dir / "tiny-wan", 1)
    with apply_cache(pipe, request.card, request.cache_config) as session:
        one_gpu_frames = generate_t2v(pipe, request, Job(request))
    one_gpu = session.stats()
    job = Job(request)
    record = split_group.run(job, request, ("cfg",), placement="split asked for")
    assert record["memory_level"] == 1 and "memory level 1 (VAE tiling)" in record["memory_plan"]
    assert record["speed"]["attention"]["on"] == "sdpa" and record["gpu_plan"]["reason"] == "split asked for"
    cache = record["cache"]
    assert cache["method"] == "teacache" and cache["steps_reused"] == one_gpu["steps_reused"] > 0
    assert cache["branches"] == one_gpu["branches"]
    assert set(cache["branches"]) == {"transformer/cond", "transformer/uncond"}
    frames = np.load(Path(record["path"]).with_suffix(".npy"))
    assert np.abs(frames - one_gpu_frames).max() == 0.0


def test_context_parallel_refuses_step_caches_and_dit_offload(split_group: SplitGroup) -> None:
    cached = parse_request(REQUEST | {"cache": {"method": "first_block", "threshold": 0.1}})
    with pytest.raises(ConfigError, match="first_block step cache does not combine with context parallel"):
        split_group.run(Job(cached), cached, ("ulysses",))
    offloaded = parse_request(REQUEST | {"memory_level": "4"})
    with pytest.raises(ConfigError, match=r"memory level 4 \(DiT offload\) does not combine"):
        split_group.run(Job(offloaded), offloaded, ("ring",))


def test_a_failed_rank_reports_one_line_and_prints_its_traceback(
    parallel_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """One gloo rank in this process; the job's error is the exception, the traceback goes to stderr."""
    from core.parallel import split_rank
    from core.parallel.distributed import free_port

    def broken(job, task, settings, pipelines):
        raise ValueError("bad frames")

    monkeypatch.setattr(split_rank, "run_on_rank", broken)
    monkeypatch.setenv("MASTER_ADDR", "")
    monkeypatch.setenv("MASTER_PORT", "")
    inbox, events = queue.Queue(), queue.Queue()
    inbox.put(split_rank.SplitTask(1, "job-x", parse_request(REQUEST), None))
    inbox.put(None)
    split_rank.rank_main(0, 1, free_port(), parallel_settings, inbox, events, SimpleNamespace(value=0))
    assert events.get_nowait() == ("failed", 1, "rank 0: ValueError: bad frames")
    printed = capsys.readouterr().err
    assert "Traceback" in printed and "ValueError: bad frames" in printed


def test_the_split_downloads_with_progress_and_a_cancel_stops_it_before_any_rank_starts(
    parallel_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = Job(parse_request(REQUEST))
    seen: list[tuple] = []
    job.report = lambda *args: seen.append(args)  # type: ignore[method-assign]

    def downloading(card, settings, on_progress=None, should_cancel=None):
        on_progress(DownloadProgress("transformer.safetensors", 5, 10, 1.0, 5.0))
        job.cancel()
        if should_cancel():
            raise JobCancelledError("download cancelled")
        return settings.models_dir / card.id

    monkeypatch.setattr("core.parallel.split.ensure_model", downloading)
    group = SplitGroup(parallel_settings, 2)
    with pytest.raises(JobCancelledError):
        group.run(job, job.request, ("cfg",))
    assert ("downloading", 5, 10) in [args[:3] for args in seen]
    assert group.pids == []
