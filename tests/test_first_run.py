"""A new user's first run: the app started with no flags on a machine without a GPU or a Hub opens every
tab on a model that runs there, says so on the page, and each tab's defaults make a video; the first page
renders in a headless Chromium (skipped when no chromium is installed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from core.video_io import probe_video, read_record
from tests.conftest import LaunchedApp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(torch.cuda.is_available(), reason="the first run on a machine without a CUDA GPU"),
]
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run")


@pytest.fixture(scope="module")
def plain_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    """``python app.py`` with no behaviour flags (its folders in temp, no Hub: HF_HUB_OFFLINE)."""
    folder = tmp_path_factory.mktemp("first-run")
    folders = ["--models-dir", str(folder / "models"), "--outputs", str(folder / "outputs")]
    app = LaunchedApp(folders, folder / "app.log")
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def first_clip(plain_app: LaunchedApp) -> tuple[str, dict]:
    """The Text to video tab's defaults with a prompt: the first thing a new user does."""
    video, details, status = Client(plain_app.url, verbose=False).predict(
        prompt_text="a red kite over a beach", api_name="/t2v"
    )
    assert status.startswith("Done"), status
    return video, details


def test_the_first_tab_defaults_make_a_video_without_gpu_or_hub(first_clip) -> None:
    video, details = first_clip
    info = probe_video(Path(video))
    record = read_record(Path(video))
    assert record["model"] == "tiny-wan" and info.frames == details["frames"] > 1
    assert (info.width, info.height) == (64, 48)


def test_every_tab_defaults_run(plain_app: LaunchedApp, first_clip) -> None:
    client = Client(plain_app.url, verbose=False)
    clip = handle_file(first_clip[0])
    longer, _, status = client.predict(video_path=clip, prompt_text="the kite dives", api_name="/continue")
    assert status.startswith("Done") and read_record(Path(longer))["model"] == "tiny-skyreels-df"
    sharper, _, status = client.predict(video_path=clip, api_name="/upscale")
    record = read_record(Path(sharper))
    assert status.startswith("Done") and record["model"] == "tiny-esrgan"
    assert probe_video(Path(sharper)).width == record["width"] > 64
    chain, _, status = client.predict(prompt_text="a kite", api_name="/long_video")
    assert status.startswith("Done") and probe_video(Path(chain)).frames > first_clip[1]["frames"]


def test_the_api_outputs_have_names(plain_app: LaunchedApp) -> None:
    info = Client(plain_app.url, verbose=False).view_api(return_format="dict", print_info=False)
    returns = info["named_endpoints"]["/t2v"]["returns"]
    assert [r["label"] for r in returns] == ["Result", "Details", "Status"]


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_first_page_renders_and_says_what_runs_here(plain_app: LaunchedApp, tmp_path: Path) -> None:
    browser = [chromium(), "--headless", *CHROMIUM_FLAGS, "--virtual-time-budget=20000"]
    dom = subprocess.run([*browser, "--dump-dom", plain_app.url], capture_output=True, text=True, timeout=120)
    assert "No CUDA GPU was found" in dom.stdout and "Tiny Wan" in dom.stdout
    shot = tmp_path / "first-page.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", "--window-size=1280,1600", plain_app.url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a rendered page, not a blank one


def test_a_failed_job_leaves_failed_in_the_status_not_its_last_stage(plain_app: LaunchedApp) -> None:
    job = Client(plain_app.url, verbose=False).submit(
        model_id="wan2.1-t2v-1.3b",
        prompt_text="a cat",
        resolution_label="480p landscape (832x480)",
        frame_count=9,
        api_name="/t2v",
    )
    with pytest.raises(Exception, match="offline"):
        job.result()
    *_, (_, details, status) = job.outputs()
    assert status.startswith("Failed:") and "offline" in status and "error" in details
