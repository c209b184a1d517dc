"""The "Long video" recipe: text to video, continuations and an upscale as one job with one output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.continuation import ContinueRequest
from core.jobs import JobQueue, JobStatus
from core.magi.request import MagiRequest
from core.requests import T2VRequest, parse_request
from core.runner import Runner
from core.settings import Settings
from core.validation import MAX_SEED, ConfigError
from core.video_io import probe_video, read_record

pytest_plugins = ["tests.conftest_magi_app"]


def run(settings: Settings, data: dict) -> dict:
    queue = JobQueue([Runner(settings, torch.device("cpu")).execute])
    job = queue.submit(parse_request(data))
    version = -1
    while not job.finished:
        version = job.wait_for_change(version, 1.0)
    queue.shutdown()
    assert job.status == JobStatus.DONE, job.error
    return job.result | {"job_id": job.id}


def test_chain_makes_one_video_as_long_as_its_parts(
    settings: Settings, progress_lines: dict[str, list[str]]
) -> None:
    t2v = {
        "model": "tiny-wan",
        "prompt": "a boat",
        "width": 64,
        "height": 64,
        "frames": 9,
        "steps": 1,
        "seed": 4,
    }
    record = run(
        settings,
        {"task": "chain", "t2v": t2v, "continuations": 2, "seconds": 1, "continue_model": "tiny-skyreels-df"},
    )
    first, *continued = record["parts"]
    info = probe_video(Path(record["path"]))
    assert first["task"] == "t2v" and [p["task"] for p in continued] == ["continue", "continue"]
    # the first continuation turns the 9 frames at 16 fps into 13 at 24 fps, then each adds 24
    assert info.frames == record["frames"] == 13 + sum(p["added_frames"] for p in continued) == 13 + 2 * 24
    assert (info.width, info.height, info.fps) == (48, 32, 24.0)
    parts = {line.split(":")[0] for line in progress_lines[record["job_id"]]}
    assert {"part 1/3", "part 2/3", "part 3/3"} <= parts
    folder = Path(record["job_folder"])
    assert len(list(folder.glob("*.mp4"))) == 3  # the parts stay in the job folder
    assert Path(record["path"]).parent == settings.outputs_dir
    assert json.loads(Path(record["path"]).with_suffix(".json").read_text())["parts"] == record["parts"]


def test_chain_can_end_with_an_upscale(settings: Settings) -> None:
    t2v = {
        "model": "tiny-wan",
        "prompt": "a lake",
        "width": 64,
        "height": 64,
        "frames": 5,
        "steps": 1,
        "seed": 2,
    }
    record = run(
        settings,
        {
            "task": "chain",
            "t2v": t2v,
            "continuations": 0,
            "upscale_model": "tiny-flashvsr",
            "upscale_scale": 2,
        },
    )
    info = probe_video(Path(record["path"]))
    assert [p["task"] for p in record["parts"]] == ["t2v", "upscale"]
    assert (info.frames, info.width, info.height) == (5, 128, 128)


def test_a_magi_chain_continues_magi_output_with_magi(runner: Runner) -> None:
    from tests.conftest_magi_app import WatchedJob

    t2v = {"model": "tiny-magi", "prompt": "a fox", "chunks": 1, "seed": 6}
    request = parse_request({"task": "chain", "t2v": t2v, "continuations": 1, "seconds": 1})
    assert request.continue_model == "tiny-magi"  # a MAGI-1 first part is continued by the same model
    job = WatchedJob(request)
    record = runner.execute(job)
    first, continued = record["parts"]
    assert (first["task"], first["model"], continued["task"], continued["model"]) == (
        "t2v",
        "tiny-magi",
        "continue",
        "tiny-magi",
    )
    info = probe_video(Path(record["path"]))
    assert info.frames == record["frames"] == first["frames"] + continued["added_frames"] == 24 + 24
    assert read_record(Path(record["path"]))["task"] == "continue"
    assert [frames for _, frames in job.previews] == [24, 24]  # each part's growing preview is shown
    assert {stage.split(":")[0] for stage, _, _ in job.reports} >= {"part 1/2", "part 2/2"}


def test_chain_parts_follow_their_model(clip_with_sound: Path) -> None:
    magi = {"task": "t2v", "model": "tiny-magi", "prompt": "a fox", "seed": 1}
    chain = parse_request({"task": "chain", "t2v": magi, "continue_model": "tiny-skyreels-df", "seconds": 1})
    assert isinstance(chain.first, MagiRequest)
    assert isinstance(chain.continuation(0, str(clip_with_sound)), ContinueRequest)
    wan = parse_request({"task": "chain", "t2v": {"model": "tiny-wan", "prompt": "a fox", "seed": 1}})
    assert isinstance(wan.first, T2VRequest) and wan.continue_model == "skyreels-v2-df-1.3b-540p"
    with pytest.raises(ConfigError, match="multiple of 24"):
        parse_request({"task": "chain", "t2v": magi | {"frames": 50}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"continuations": 0}, "needs at least one continuation or an upscale"),
        ({"continuations": 99}, "continuations must be between"),
        ({"continue_model": "tiny-wan"}, "continue model must be one of"),
        ({"upscale_model": "nope"}, "upscale model must be one of"),
        ({"t2v": {"model": "tiny-wan", "prompt": ""}}, "prompt must not be empty"),
        ({"seconds": 0.01, "continue_model": "tiny-skyreels-df"}, "later part.*frames to add must be"),
        ({"continuations": 0, "upscale_model": "realesrgan-x2plus"}, "later part.*upscales x2 at most"),
    ],
)
def test_bad_chains_are_refused_clearly(change: dict, message: str) -> None:
    data = {"task": "chain", "t2v": {"model": "tiny-wan", "prompt": "a cat"}} | change
    with pytest.raises(ConfigError, match=message):
        parse_request(data)


def test_continuation_seeds_wrap_past_the_largest_seed() -> None:
    t2v = {"model": "tiny-wan", "prompt": "a cat", "seed": MAX_SEED}
    chain = parse_request(
        {"task": "chain", "t2v": t2v, "continuations": 2, "continue_model": "tiny-skyreels-df"}
    )
    assert [part.seed for part in chain.planned_parts()] == [MAX_SEED, 0, 1]


def test_long_video_form_follows_the_first_model() -> None:
    from ui.chain_tab import first_model_settings
    from weights.registry import get_card

    resolution, frames, steps, continue_model = first_model_settings(
        "tiny-magi", ["tiny-skyreels-df", "tiny-magi"]
    )
    assert steps["value"] == get_card("tiny-magi").defaults.steps
    assert frames["step"] == 24 and frames["minimum"] == 24 and frames["value"] % 24 == 0
    assert continue_model["value"] == "tiny-magi"  # MAGI-1 continues its own clip
    assert resolution["value"] in resolution["choices"]
    _, frames, _, continue_model = first_model_settings("tiny-wan", ["tiny-skyreels-df", "tiny-magi"])
    assert frames["step"] == 4 and "value" not in continue_model
