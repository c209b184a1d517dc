"""A continuation from a still picture on the tiny SkyReels-V2 DF model: the video starts at the picture,
has the asked frames, size and fps, and the request takes a clip or a picture, never both or neither."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.continuation import ContinueRequest
from core.jobs import Job
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request, task_for, wan_output
from core.validation import ConfigError
from core.video_io import probe_video, read_frames, read_record
from tests.conftest_parallel import _write_video_and_frames
from weights.registry import get_card

pytest_plugins = ["tests.conftest_continue"]


def picture(path: Path, size: tuple[int, int] = (96, 64)) -> Path:
    """Left half red, right half blue: a start frame the video's first frame can be compared with."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2] = (230, 30, 30)
    pixels[:, size[0] // 2 :] = (30, 30, 230)
    Image.fromarray(pixels).save(path)
    return path


def test_a_picture_starts_the_continuation(
    continue_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wan_output, "write_video", _write_video_and_frames)
    start = picture(tmp_path / "start.png")
    request = parse_request(
        {
            "task": "continue",
            "model": "tiny-skyreels-df",
            "image": str(start),
            "prompt": "a red car",
            "add_frames": 8,
            "steps": 2,
            "seed": 3,
        }
    )
    assert request.video == "" and request.image == str(start)
    runner = Runner(continue_settings, torch.device("cpu"))
    record = task_for(request).run(runner, Job(request), request)
    path = Path(record["path"])
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (9, 48, 32, 24.0)
    assert (record["frames"], record["added_frames"], record["input_frames"]) == (9, 8, 1)
    assert record["image"]["name"] == "start.png" and record["audio"] is False
    assert read_record(path)["request"]["image"] == str(start)
    first = np.load(path.with_suffix(".npy"))[0] * 255  # the raw frames (x264 is lossy at 48x32)
    kept = round_trip(runner, Image.open(start).convert("RGB").resize((48, 32)))
    assert np.abs(first - kept).max() < 1  # the picture's latent frame, kept clean through the run
    assert len(read_frames(path)) == 9


def round_trip(runner: Runner, image: Image.Image) -> np.ndarray:
    """``image`` through the tiny model's VAE (encode, decode), as 0-255 floats: the video's first frame
    when the picture starts it (the tiny random VAE does not give the picture back)."""
    card = get_card("tiny-skyreels-df")
    pipe = runner.models.get(card, runner.settings.models_dir / card.id)
    pixels = pipe.video_processor.preprocess(image, height=image.height, width=image.width).unsqueeze(2)
    with torch.no_grad():
        latents = pipe.vae.encode(pixels.float()).latent_dist.mode()
        decoded = pipe.vae.decode(latents).sample[0, :, 0]
    return ((decoded.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy()


def test_continuation_only_drops_the_pictures_frame(continue_settings: Settings, tmp_path: Path) -> None:
    start = picture(tmp_path / "start.png", (64, 96))  # portrait: the portrait preset
    request = ContinueRequest(
        "tiny-skyreels-df",
        "",
        "a cat",
        add_frames=8,
        steps=1,
        seed=1,
        continuation_only=True,
        image=str(start),
    )
    record = task_for(request).run(Runner(continue_settings, torch.device("cpu")), Job(request), request)
    info = probe_video(Path(record["path"]))
    assert (info.frames, info.width, info.height) == (8, 32, 48)


def test_a_clip_or_a_picture_not_both_nor_neither(clip_with_audio: Path, tmp_path: Path) -> None:
    start = str(picture(tmp_path / "start.png"))
    with pytest.raises(ConfigError, match="not both"):
        ContinueRequest("tiny-skyreels-df", str(clip_with_audio), "x", image=start)
    with pytest.raises(ConfigError, match="Choose a clip to extend or a start image"):
        ContinueRequest("tiny-skyreels-df", "", "x")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ConfigError):
        ContinueRequest("tiny-skyreels-df", "", "x", image=str(tmp_path / "notes.txt"))


class CountingJob(Job):
    """A job that keeps its denoising reports."""

    def __init__(self, request: object) -> None:
        super().__init__(request)
        self.steps: list[tuple[int, int]] = []

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        if stage == "denoising":
            self.steps.append((step, total))
        super().report(stage, step, total, detail)


@pytest.mark.parametrize("ar_step", [0, 2])
def test_progress_counts_every_window_of_a_long_run(
    continue_settings: Settings, tmp_path: Path, ar_step: int
) -> None:
    start = picture(tmp_path / "start.png")
    request = ContinueRequest(
        "tiny-skyreels-df",
        "",
        "a cat",
        add_frames=40,
        steps=2,
        seed=1,
        ar_step=ar_step,
        causal_block_size=1,
        image=str(start),
    )
    job = CountingJob(request)
    record = task_for(request).run(Runner(continue_settings, torch.device("cpu")), job, request)
    assert record["frames"] == 1 + request.add_frames
    assert job.steps[-1][0] == job.steps[-1][1] == len(job.steps)
