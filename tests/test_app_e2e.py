"""The launched app driven through gradio_client, as a user's script would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from core.settings import ROOT
from core.video_io import probe_video, read_frames, read_record

pytestmark = pytest.mark.e2e


def test_help_lists_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--host",
        "--port",
        "--share",
        "--auth",
        "--outputs",
        "--models-dir",
        "--offline",
        "--gpus",
        "--dev",
    ):
        assert flag in out


def test_t2v_through_the_api_makes_the_asked_video(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    video, details, status = client.predict(
        "tiny-wan",
        "a bird flying over the sea",
        "blurry",
        "small portrait (48x64)",
        9,
        2,
        4.0,
        0,
        123,
        api_name="/t2v",
    )
    info = probe_video(Path(video))
    assert (info.frames, info.width, info.height, info.fps) == (9, 48, 64, 16.0)
    assert details["seed"] == 123 and details["frames"] == 9
    assert details["memory_level"] == 0  # the planner's pick on a machine without a GPU
    assert read_record(Path(video))["request"]["prompt"] == "a bird flying over the sea"
    assert status.startswith("Done")


def test_i2v_through_the_api_with_first_and_last_frame(launched_app, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (90, 120), (200, 30, 30)).save(tmp_path / "start.png")
    Image.new("RGB", (90, 120), (30, 30, 200)).save(tmp_path / "end.webp")
    (tmp_path / "notes.png").write_text("not a picture")
    client = Client(launched_app.url, verbose=False)
    values = {
        "model_id": "tiny-wan-flf2v",
        "image_path": handle_file(str(tmp_path / "start.png")),
        "end_image_path": handle_file(str(tmp_path / "end.webp")),
        "prompt_text": "a bird flying over the sea",
        "negative_text": "",
        "resolution_label": "Match the image (default size)",
        "frame_count": 13,
        "step_count": 2,
        "guidance_scale": 4.0,
        "flow_shift": 0,
        "seed_value": 5,
    }
    video, details, status = client.predict(**values, api_name="/i2v")
    info = probe_video(Path(video))
    assert (info.frames, info.width, info.height, info.fps) == (13, 48, 64, 16.0)  # portrait, as the picture
    assert details["image"]["name"] == "start.png" and details["end_image"]["name"] == "end.webp"
    assert len(details["image"]["sha256"]) == 64 and status.startswith("Done")
    bad = values | {"image_path": handle_file(str(tmp_path / "notes.png"))}
    with pytest.raises(Exception, match="not a picture this app can read"):
        client.predict(**bad, api_name="/i2v")


def test_bad_request_is_a_readable_error_and_the_app_keeps_serving(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    with pytest.raises(Exception, match="prompt must not be empty"):
        client.predict(prompt_text="  ", api_name="/t2v")
    with pytest.raises(Exception, match="not divisible by 16"):
        client.predict(prompt_text="a cat", resolution_label="50x48", api_name="/t2v")
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(prompt_text="a cat", level="9", api_name="/t2v")
    video, details, status = client.predict(
        prompt_text="a cat", step_count=6, speed_preset="Faster", api_name="/t2v"
    )
    assert probe_video(Path(video)).frames == details["frames"]
    assert details["cache"]["steps_reused"] > 0 and "reused" in status


def test_a_t2v_result_continues_and_upscales_through_the_api(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    clip, _, _ = client.predict(
        prompt_text="a boat",
        resolution_label="64x64",
        frame_count=9,
        step_count=2,
        seed_value=3,
        api_name="/t2v",
    )
    longer, details, status = client.predict(
        model_id="tiny-skyreels-df",
        video_path=handle_file(clip),
        prompt_text="the boat sails on",
        seconds_to_add=1,
        step_count=2,
        api_name="/continue",
    )
    info = probe_video(Path(longer))
    assert (info.width, info.height, info.fps) == (48, 32, 24.0)
    assert info.frames == details["input_frames"] + details["added_frames"] == 13 + 24
    assert status.startswith("Done")
    sharper, details, _ = client.predict(
        video_path=handle_file(clip), model_id="tiny-flashvsr", scale_value="2", api_name="/upscale"
    )
    info = probe_video(Path(sharper))
    assert (info.frames, info.width, info.height, info.fps) == (9, 128, 128, 16.0)
    assert details["size_note"] == "64x64 -> 128x128"


def test_continue_from_a_start_image_through_the_api(launched_app, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (120, 80), (200, 30, 30)).save(tmp_path / "start.png")
    client = Client(launched_app.url, verbose=False)
    values = {
        "model_id": "tiny-skyreels-df",
        "video_path": None,  # the clip stays empty: the picture starts the video
        "image_path": handle_file(str(tmp_path / "start.png")),
        "prompt_text": "the red wall falls",
        "seconds_to_add": 1,
        "step_count": 2,
        "seed_value": 4,
    }
    video, details, status = client.predict(**values, api_name="/continue")
    info = probe_video(Path(video))
    assert (info.frames, info.width, info.height, info.fps) == (1 + 24, 48, 32, 24.0)
    assert details["image"]["name"] == "start.png" and details["added_frames"] == 24
    assert read_record(Path(video))["request"]["image"].endswith("start.png") and status.startswith("Done")
    clip = handle_file(video)
    with pytest.raises(Exception, match="not both"):
        client.predict(**(values | {"video_path": clip}), api_name="/continue")
    with pytest.raises(Exception, match="Choose a clip to extend or a start image"):
        client.predict(**(values | {"image_path": None}), api_name="/continue")


def test_history_and_compare_in_the_launched_app(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    first, details, _ = client.predict(
        prompt_text="a quiet lake", step_count=2, seed_value=5, api_name="/t2v"
    )
    history = client.predict("", "tiny-wan", "quiet lake", api_name="/history")
    paths = [row[-1] for row in history["data"]]
    assert len(paths) == 1 and Path(paths[0]).name == details["output"]
    settings = client.predict(paths[0], api_name="/rerun_settings")
    second, again, _ = client.predict(
        prompt_text=settings["prompt"],
        step_count=settings["steps"],
        seed_value=settings["seed"],
        api_name="/t2v",
    )
    assert again["seed"] == 5
    _, means, synced = client.predict(handle_file(first), handle_file(second), api_name="/compare")
    assert means["psnr_db"] > 40 and means["ssim"] > 0.99  # same settings, same seed: the same video
    assert means["lpips"] is None and any("LPIPS unavailable" in note for note in means["notes"])
    a, together = (
        read_frames(Path(first)),
        read_frames(Path(synced["video"] if isinstance(synced, dict) else synced)),
    )
    assert together.shape == (a.shape[0], a.shape[1], 2 * a.shape[2], 3)  # A | B in one video: in step
    assert np.abs(together[:, :, : a.shape[2]].astype(int) - a).mean() < 8  # left half is A (re-encoded once)


def test_long_video_through_the_api(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    video, details, status = client.predict(
        model_id="tiny-wan",
        prompt_text="a boat at sea",
        resolution_label="64x64",
        frame_count=9,
        step_count=1,
        seed_value=1,
        continue_id="tiny-skyreels-df",
        continuation_count=1,
        seconds_each=1,
        upscale_id="",
        api_name="/long_video",
    )
    parts = details["parts"]
    assert [part["task"] for part in parts] == ["t2v", "continue"]
    assert probe_video(Path(video)).frames == details["frames"] == 13 + parts[1]["added_frames"]
    assert status.startswith("Done")
