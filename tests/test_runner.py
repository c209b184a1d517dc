"""The runner end to end on the tiny Wan model: a real mp4 with the asked frames, size, fps and record."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import torch

from core.jobs import Job, JobQueue, JobStatus
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import T2VRequest
from core.video_io import probe_video, read_frames, read_record


def loaded_pipeline(runner: Runner, request: T2VRequest, folder: Path):
    """The pipeline the runner uses for ``request`` (no LoRAs) at memory level 0 (loading it if needed)."""
    return runner.models.get(request.card, folder, 0, variant=(request.speed_config, ()))


def run_job(runner: Runner, data: dict, cancel_at: tuple[str, int] | None = None) -> Job:
    """Run ``data`` on ``runner`` through a one-worker queue until it ends; ``cancel_at`` (stage, step):
    cancel the job when it reports that step of that stage."""
    queue = JobQueue([runner.execute])
    job = queue.submit(parse_request(data))
    if cancel_at is not None:
        report = job.report

        def report_and_cancel(stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
            report(stage, step, total, detail)
            if (stage, step) == cancel_at:
                job.cancel()

        job.report = report_and_cancel
    version = -1
    while not job.finished:
        version = job.wait_for_change(version, 1.0)
    queue.shutdown()
    return job


def test_t2v_writes_the_asked_video_with_metadata_and_sidecar(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    job = run_job(
        runner,
        {
            "model": "tiny-wan",
            "prompt": "a red car",
            "frames": 13,
            "width": 48,
            "height": 64,
            "steps": 2,
            "seed": 11,
        },
    )
    assert job.status == JobStatus.DONE, job.error
    path = Path(job.result["path"])
    assert path.parent == settings.outputs_dir and path.suffix == ".mp4"
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (13, 48, 64, 16.0)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    record = read_record(path)
    assert record["request"]["prompt"] == "a red car" and record["seed"] == 11
    assert record["model"] == "tiny-wan" and record["request"]["steps"] == 2
    assert json.loads(path.with_suffix(".json").read_text()) == record
    assert {p.name for p in settings.outputs_dir.iterdir()} == {path.name, path.with_suffix(".json").name}


def test_same_seed_gives_the_same_video_and_keeps_the_pipeline_loaded(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    data = {"model": "tiny-wan", "prompt": "a dog", "steps": 2, "seed": 5}
    first = run_job(runner, data)
    pipe = loaded_pipeline(runner, first.request, settings.models_dir / "tiny-wan")
    second = run_job(runner, data)
    assert loaded_pipeline(runner, first.request, settings.models_dir / "tiny-wan") is pipe
    a, b = (read_frames(Path(j.result["path"])).astype(np.int16) for j in (first, second))
    assert a.shape == b.shape and np.abs(a - b).mean() < 0.5  # same frames; x264 may round a pixel apart


def test_cancel_stops_within_one_step_and_reports_cancelled(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    card_folder = settings.models_dir / "tiny-wan"
    data = {"model": "tiny-wan", "prompt": "a boat", "steps": 20, "seed": 1}
    pipe = loaded_pipeline(runner, parse_request(data), card_folder)
    calls = []
    handle = pipe.transformer.register_forward_hook(lambda *args: calls.append(1))
    job = run_job(runner, data, cancel_at=("denoising", 3))
    handle.remove()
    assert job.status == JobStatus.CANCELLED
    assert job.progress.step == 3
    assert len(calls) == 3 * 2  # three steps, cond + uncond each, then nothing more
    assert not settings.outputs_dir.exists() or not any(settings.outputs_dir.iterdir())


def test_switching_models_frees_the_previous_pipeline(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    loads = []
    runner.models.loader = lambda card, folder, device, level: loads.append(card.id) or object()
    from weights.registry import get_card

    runner.models.get(get_card("tiny-wan"), Path("x"))
    runner.models.get(get_card("tiny-wan"), Path("x"))
    runner.models.get(get_card("wan2.1-t2v-1.3b"), Path("y"))
    assert loads == ["tiny-wan", "wan2.1-t2v-1.3b"]
    assert runner.models.loaded_id == "wan2.1-t2v-1.3b"


def test_cached_run_calls_the_transformer_less_and_records_it(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    request = {"model": "tiny-wan", "prompt": "a horse", "steps": 8, "seed": 2}
    pipe = loaded_pipeline(runner, parse_request(request), settings.models_dir / "tiny-wan")
    calls: list[int] = []
    handle = pipe.transformer.blocks[-1].ffn.register_forward_hook(lambda *args: calls.append(1))
    plain = run_job(runner, request)
    plain_calls = len(calls)
    cached = run_job(runner, request | {"cache": {"preset": "faster"}})
    handle.remove()
    stats = cached.result["cache"]
    assert plain.result["cache"]["method"] == "none"
    assert stats["method"] == "teacache" and stats["steps_reused"] > 0
    assert stats["steps_computed"] + stats["steps_reused"] == plain_calls == 16
    assert len(calls) - plain_calls == stats["steps_computed"] < plain_calls
    assert probe_video(Path(cached.result["path"])).frames == 9


def test_a_job_freezes_what_survives_it_and_unloading_thaws_it(settings: Settings) -> None:
    """The loaded pipeline leaves the collector's view after a job (the next job's collection walks only
    what it made), and comes back when the model is released, so its cycles can be collected."""
    runner = Runner(settings, torch.device("cpu"))
    gc.unfreeze()
    job = run_job(runner, {"model": "tiny-wan", "prompt": "a kite", "frames": 5, "steps": 1, "seed": 3})
    assert job.status == JobStatus.DONE, job.error
    frozen = gc.get_freeze_count()
    pipe = loaded_pipeline(runner, job.request, settings.models_dir / "tiny-wan")
    assert frozen > 0 and not any(obj is pipe for obj in gc.get_objects())
    runner.models.unload()
    assert gc.get_freeze_count() == 0
