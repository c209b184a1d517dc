"""A text-to-video job decodes its latents straight into the mp4 (the writer encoding meanwhile): the same
frames as the pipeline's own decode, the asked frames, size and fps, what ran and each stage's seconds
in the record, and a cancel during the decode keeps the frames made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from core.jobs import Job, JobStatus
from core.metrics import psnr
from core.runner import Runner
from core.settings import Settings
from core.speed.vae_decode import decode_setup, decode_stream
from core.tasks import parse_request
from core.tasks.t2v import generate_t2v
from core.tasks.wan_output import DECODE_STAGE, STAGES
from core.video_io import (
    partial_path_for,
    probe_video,
    read_frames,
    read_record,
    to_uint8_frames,
    write_video,
)
from tests.test_runner import run_job

REQUEST = {"model": "tiny-wan", "prompt": "a red car", "frames": 13, "width": 48, "height": 64, "steps": 2}


def test_the_streamed_video_is_the_pipelines_and_the_record_says_what_ran(
    settings: Settings, encoded_frames
) -> None:
    runner = Runner(settings, torch.device("cpu"))
    job = run_job(runner, REQUEST | {"seed": 11})
    assert job.status == JobStatus.DONE, job.error
    path = Path(job.result["path"])
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (13, 48, 64, 16.0)
    record = read_record(path)
    assert json.loads(path.with_suffix(".json").read_text()) == record
    assert record["status"] == "done" and "partial" not in record
    assert (
        record["decode"]["dtype"] == "float32" and record["decode"]["stream"] and record["decode"]["overlap"]
    )
    assert set(record["stages"]) == set(STAGES) and all(v >= 0 for v in record["stages"].values())
    assert {p.name for p in settings.outputs_dir.iterdir()} == {path.name, path.with_suffix(".json").name}

    # The old path on the same pipeline and seed: the pipeline's decode, then the whole clip written.
    request = parse_request(REQUEST | {"seed": 11})
    pipe = runner.models.get(
        request.card, settings.models_dir / "tiny-wan", 0, variant=(request.speed_config, ())
    )
    old_frames = to_uint8_frames(generate_t2v(pipe, request, Job(request)))
    latents = generate_t2v(pipe, request, Job(request), latents=True)
    setup = decode_setup(request.speed_config, pipe.vae, latents, torch.device("cpu"))
    new_frames = np.concatenate([pending.wait() for pending in decode_stream(pipe.vae, latents, setup)])
    assert np.array_equal(new_frames, old_frames)
    assert np.array_equal(encoded_frames(path), old_frames)  # exact: what went to the encoder
    old = write_video(settings.outputs_dir.parent / "old.mp4", old_frames, 16.0)
    assert psnr(read_frames(path), read_frames(old)) > 45  # x264 is not always bit-reproducible


def test_fast_decode_asked_on_the_cpu_runs_bfloat16_without_reloading(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    first = run_job(runner, REQUEST | {"seed": 3})
    pipe = runner.models._loaded.model
    fast = run_job(runner, REQUEST | {"seed": 3, "speed": {"fast_decode": True}})
    assert fast.status == JobStatus.DONE, fast.error
    assert runner.models._loaded.model is pipe  # decode options do not change the loaded pipeline
    assert fast.result["decode"]["dtype"] == "bfloat16" and fast.result["decode"]["channels_last"]
    a, b = (read_frames(Path(job.result["path"])) for job in (first, fast))
    value = psnr(a, b)
    print(f"tiny-wan job, bfloat16 vs float32 decode after x264: {value:.2f} dB")
    assert a.shape == b.shape == (13, 64, 48, 3) and value > 30  # random weights: see test_vae_decode


def test_cancel_during_the_decode_keeps_the_frames_made(settings: Settings) -> None:
    runner = Runner(settings, torch.device("cpu"))
    job = run_job(runner, REQUEST | {"seed": 5}, cancel_at=(DECODE_STAGE, 5))  # frames decoded
    assert job.status == JobStatus.CANCELLED
    path = Path(job.result["path"])
    assert path.name.endswith("_partial.mp4") and path.exists()
    assert not partial_path_for(path).exists()
    assert (probe_video(path).frames, job.result["frames"]) == (5, 5)  # latent frames 1 and 2: 1 + 4 frames
    record = read_record(path)
    assert record["status"] == "cancelled" and record["partial"] and record["request"]["frames"] == 13
    assert json.loads(path.with_suffix(".json").read_text()) == record
    hidden = [p.name for p in settings.outputs_dir.iterdir() if p.name.startswith(".")]
    assert hidden == []
