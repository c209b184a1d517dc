"""The "Long video" recipe: text to video, continuations and an upscale as one job with one output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.continuation import ContinueRequest
from core.history import list_results
from core.jobs import JobQueue, JobStatus
from core.magi.request import MagiRequest
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import T2VRequest
from core.validation import MAX_SEED, ConfigError
from core.video_io import probe_video, read_record
from weights.registry import cards_for

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
    (listed,) = list_results(settings.outputs_dir)  # the parts of a finished chain are not results
    assert listed.task == "chain"
    Path(record["path"]).with_suffix(".json").unlink()  # as if killed before the chain was saved
    parts = list_results(settings.outputs_dir)
    assert sorted(e.prompt.split("]")[0] for e in parts) == [
        "[part 1/2 of an unfinished long video",
        "[part 2/2 of an unfinished long video",
    ]


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
    fox = {"model": "tiny-wan", "prompt": "a fox", "seed": 1, "frames": 13}  # long enough for its overlap
    wan = parse_request({"task": "chain", "t2v": fox})
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
    from core.facade.forms import form_for
    from weights.registry import get_card

    def first_model_settings(model_id):
        form = form_for("long_video", model_id)
        names = ("resolution_label", "frame_count", "step_count", "continue_id")
        return (form[name].props() for name in names)

    resolution, frames, steps, continue_model = first_model_settings("tiny-magi")
    assert steps["value"] == get_card("tiny-magi").defaults.steps
    assert frames["step"] == 24 and frames["minimum"] == 24 and frames["value"] % 24 == 0
    assert continue_model["value"] == "tiny-magi"  # MAGI-1 continues its own clip
    assert resolution["value"] in resolution["choices"]
    _, frames, _, continue_model = first_model_settings("tiny-wan")
    assert frames["step"] == 4 and "value" not in continue_model


@pytest.mark.parametrize(
    ("t2v", "continue_model", "message"),
    [
        (  # the endpoint's default continuation model after tiny-wan's 9 frames (13 at 24 fps)
            {"model": "tiny-wan", "prompt": "a boat", "frames": 9},
            "skyreels-v2-df-1.3b-540p",
            r"first clip \(Tiny Wan \(test model\)\) has 9 frames at 16 fps "
            r"\(13 at the continuation's 24 fps\), too short for SkyReels-V2 DF 1.3B 540P to continue: "
            r"its overlap needs at least 17 frames; raise the first clip's frames "
            r"\(t2v frames; the Long video tab's frame_count\) to at least 13, or pick another "
            r"continue_model",
        ),
        (
            {"model": "tiny-wan", "prompt": "a boat", "frames": 5},
            "tiny-magi",
            r"its first chunk needs at least 24 frames; raise .* to at least 17",
        ),
        (  # (with an overlap of 100) no frame count of tiny-wan is long enough: only the model can change
            {"model": "tiny-wan", "prompt": "a boat"},
            "tiny-skyreels-df",
            r"its overlap needs at least 100 frames; pick another continue_model$",
        ),
    ],
)
def test_a_first_clip_too_short_to_continue_is_refused_at_submission(
    t2v: dict, continue_model: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "100 frames" in message:
        monkeypatch.setattr(ContinueRequest, "min_input_frames", 100)
    with pytest.raises(ConfigError, match=message):
        parse_request({"task": "chain", "t2v": t2v, "continuations": 1, "continue_model": continue_model})
    # an upscale alone does not continue: nothing to check
    parse_request({"task": "chain", "t2v": t2v, "continuations": 0, "upscale_model": "tiny-flashvsr"})


def test_long_enough_first_clips_are_accepted() -> None:
    wan = {"model": "tiny-wan", "prompt": "a boat", "frames": 13}  # 19 frames at 24 fps >= 17
    chain = parse_request({"task": "chain", "t2v": wan, "continue_model": "skyreels-v2-df-1.3b-540p"})
    assert chain.first.frames == 13
    magi = {"model": "tiny-magi", "prompt": "a boat", "chunks": 1}
    assert parse_request({"task": "chain", "t2v": magi, "continuations": 1}).continue_model == "tiny-magi"


@pytest.mark.parametrize(("frames", "fps", "to_fps"), [(9, 16, 24), (13, 16, 24), (11, 16, 24), (24, 24, 24)])
def test_the_submission_check_counts_frames_as_the_continuation_reads_them(
    tmp_path: Path, frames: int, fps: int, to_fps: int
) -> None:
    """:func:`converted_frames` agrees with what ``open_input`` finds in a written clip."""
    import numpy as np

    from core.tasks.chain import converted_frames
    from core.video_input import open_input
    from core.video_io import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps) as writer:
        for index in range(frames):
            writer.write(np.full((1, 32, 48, 3), index * 8, dtype=np.uint8))
    card = next(c for c in cards_for("continue", dev=True) if c.fps == to_fps)
    assert open_input(path, card).frames == converted_frames(frames, fps, to_fps)


def test_long_video_tab_sends_the_form_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No snapping of the frames (the slider gives valid counts; the API's others get the core's error),
    the upscale factor offered as "2" / "4" (as the API advertises it) and sent as a number."""
    from types import SimpleNamespace

    import gradio as gr

    from core.facade import Facade
    from ui.chain_tab import build_chain_tab

    studio = SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True), dispatcher=None)
    with gr.Blocks() as demo:
        build_chain_tab(Facade(studio))
    submitted: list[dict] = []

    def run_job(facade, task, values, outputs, progress):
        submitted.append(facade.request(task, values))
        yield {}

    monkeypatch.setattr("ui.chain_tab.run_job", run_job)
    run = next(f.fn for f in demo.fns.values() if f.api_name == "long_video")
    form = ("tiny-wan", "a boat", "64x64", 10.0, 1, 1, "tiny-skyreels-df", 1, 1, "tiny-flashvsr", "2")
    list(run(*form))
    list(run("tiny-magi", "a fox", "tiny (64x64)", 30.0, 4, 1, "tiny-magi", 1, 1, "", "4"))
    list(run(*form[:3], 9.0, *form[4:-1], "4"))
    assert submitted[0]["t2v"]["frames"] == 10 and submitted[0]["upscale_scale"] == 2
    with pytest.raises(ConfigError, match=r"frames must be 4k\+1 \(e.g. 9\), got 10"):
        parse_request(submitted[0])
    assert submitted[1]["t2v"]["frames"] == 30
    with pytest.raises(ConfigError, match="frames must be a multiple of 24"):
        parse_request(submitted[1])
    chain = parse_request(submitted[2])
    assert chain.first.frames == 9 and chain.upscale_scale == 4
    [factor] = [b for b in demo.blocks.values() if getattr(b, "label", None) == "Upscale factor"]
    assert factor.value == "4" and factor.preprocess("2") == "2"
    with pytest.raises(gr.Error, match="not in the list of choices"):
        factor.preprocess("3")
    parameters = demo.get_api_info()["named_endpoints"]["/long_video"]["parameters"]
    [info] = [p for p in parameters if p["parameter_name"] == "factor"]
    assert info["python_type"]["type"] == "Literal['2', '4']" and info["parameter_default"] == "4"
