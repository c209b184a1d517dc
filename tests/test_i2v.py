"""Image to video on the tiny I2V, FLF2V and TI2V models, end to end on the CPU: the requests, the video
made from a picture, the records, the memory estimate, batch rows and "use the last frame"."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.batch import image_row
from core.batch_files import resolve_row_files
from core.frame_grab import extract_frame
from core.jobs import Job
from core.memory.estimate import estimate_memory
from core.memory.levels import TEXT_ENCODER_ON_CPU
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request, task_for
from core.tasks.i2v import I2VRequest, i2v_pipeline
from core.tasks.t2v import pipeline_loader
from core.validation import ConfigError
from core.video_io import probe_video, read_frames, read_record
from tests.lora_files import tiny_lora, write_lora
from weights.registry import get_card


def picture(path: Path, size: tuple[int, int] = (120, 80), color=(200, 40, 40)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def runner(settings: Settings) -> Runner:
    return Runner(settings, torch.device("cpu"))


def run(runner: Runner, data: dict) -> dict:
    request = parse_request({"task": "i2v", "prompt": "a cat", "seed": 7, **data})
    return runner.execute(Job(request))


def test_a_picture_makes_a_video_of_the_asked_frames_size_and_fps(runner: Runner, tmp_path: Path) -> None:
    start = picture(tmp_path / "start.png", (300, 200))
    record = run(runner, {"model": "tiny-wan-i2v", "image": str(start), "frames": 13})
    info = probe_video(Path(record["path"]))
    assert (info.frames, info.width, info.height, info.fps) == (13, 64, 48, 16.0)
    assert record["task"] == "i2v" and record["seed"] == 7
    digest = hashlib.sha256(start.read_bytes()).hexdigest()
    image = record["image"]
    assert (image["name"], image["sha256"]) == ("start.png", digest)
    assert (image["width"], image["height"]) == (300, 200)
    assert "cut 4 px left and right" in image["fit"]
    assert read_record(Path(record["path"]))["request"]["image"] == str(start)


def test_step_cache_applies_to_image_to_video(runner: Runner, tmp_path: Path) -> None:
    start = picture(tmp_path / "start.png")
    cache = {"preset": "faster"}
    record = run(runner, {"model": "tiny-wan-i2v", "image": str(start), "steps": 6, "cache": cache})
    assert record["cache"]["method"] == "teacache" and record["cache"]["steps_reused"] > 0


def test_first_and_last_frame(runner: Runner, tmp_path: Path) -> None:
    start, end = picture(tmp_path / "a.png"), picture(tmp_path / "b.jpg", color=(20, 20, 220))
    record = run(
        runner,
        {"model": "tiny-wan-flf2v", "image": str(start), "end_image": str(end), "width": 48, "height": 64},
    )
    info = probe_video(Path(record["path"]))
    assert (info.frames, info.width, info.height) == (9, 48, 64)
    assert record["end_image"]["name"] == "b.jpg" and record["flow_shift"] == 16.0


def test_ti2v_card_runs_its_wanpipeline_folder_as_image_to_video(runner: Runner, tmp_path: Path) -> None:
    start = picture(tmp_path / "start.png", (80, 120))  # portrait: the portrait preset
    record = run(runner, {"model": "tiny-wan-ti2v", "image": str(start)})
    assert (record["width"], record["height"]) == (48, 64)
    card = get_card("tiny-wan-ti2v")
    opened_as = pipeline_loader(i2v_pipeline(card))
    pipe = runner.models.get(card, runner.settings.models_dir / card.id, 0, "i2v", opened_as)
    assert type(pipe).__name__ == "WanImageToVideoPipeline" and pipe.config.expand_timesteps
    assert i2v_pipeline(get_card("tiny-wan-i2v")) is None


def test_end_image_rules_and_missing_start_image(tmp_path: Path) -> None:
    start = str(picture(tmp_path / "a.png"))
    with pytest.raises(ConfigError, match="takes no end image"):
        I2VRequest("tiny-wan-i2v", "x", image=start, end_image=start)
    with pytest.raises(ConfigError, match="add an end image"):
        I2VRequest("tiny-wan-flf2v", "x", image=start)
    with pytest.raises(ConfigError, match="Choose a start image"):
        I2VRequest("tiny-wan-i2v", "x")
    with pytest.raises(ConfigError, match="not an image-to-video model"):
        I2VRequest("tiny-wan", "x", image=start)
    split = I2VRequest("tiny-wan-i2v", "x", image=start, multi_gpu="split")
    assert split.multi_gpu == "split" and task_for(split).splittable is True


def test_a_non_image_is_refused_with_what_to_do(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ConfigError, match=r"notes.png is not a picture this app can read; use a JPEG, PNG"):
        I2VRequest("tiny-wan-i2v", "x", image=str(text))
    small = picture(tmp_path / "icon.png", (16, 16))
    with pytest.raises(ConfigError, match=r"icon.png is 16x16: too small .* at least 32 px"):
        I2VRequest("tiny-wan-i2v", "x", image=str(small))


def test_memory_estimate_counts_the_image_encoder() -> None:
    i2v, t2v = get_card("wan2.1-i2v-14b-480p"), get_card("wan2.1-t2v-14b")
    encoder_gib = 0.63077e9 * 2 / 2**30
    dit_gib = (16.3949 - 14.2885) * 1e9 * 2 / 2**30
    low, high = (estimate_memory(c, 832, 480, 81, 0) for c in (t2v, i2v))
    assert high.gpu_weights_gib - low.gpu_weights_gib == pytest.approx(encoder_gib + dit_gib, rel=1e-3)
    on_cpu = estimate_memory(i2v, 832, 480, 81, TEXT_ENCODER_ON_CPU)
    without = estimate_memory(t2v, 832, 480, 81, TEXT_ENCODER_ON_CPU)
    assert on_cpu.host_weights_gib - without.host_weights_gib == pytest.approx(encoder_gib, rel=1e-3)
    assert get_card("wan2.2-i2v-a14b").architecture().params.image_encoder == 0.0


def test_cards_carry_the_published_teacache_i2v_fits() -> None:
    fit480 = get_card("wan2.1-i2v-14b-480p").caches.teacache.coefficients
    fit720 = get_card("wan2.1-i2v-14b-720p").caches.teacache.coefficients
    assert fit480[0] == pytest.approx(-302.331670) and fit720[0] == pytest.approx(-114.36346466)
    assert get_card("wan2.2-ti2v-5b").serves("i2v") and get_card("wan2.2-ti2v-5b").serves("t2v")


def test_last_frame_becomes_a_start_image(runner: Runner, tmp_path: Path) -> None:
    record = run(runner, {"model": "tiny-wan-i2v", "image": str(picture(tmp_path / "a.png"))})
    frames = read_frames(Path(record["path"]))
    last = extract_frame(record["path"], tmp_path / "frames")
    first = extract_frame(record["path"], tmp_path / "frames", 0)
    assert np.array_equal(np.asarray(Image.open(last)), frames[-1])
    assert np.array_equal(np.asarray(Image.open(first)), frames[0])
    with pytest.raises(ConfigError, match="has no frame 99"):
        extract_frame(record["path"], tmp_path / "frames", 99)
    I2VRequest("tiny-wan-i2v", "next", image=str(last))  # usable as the next start image


def test_batch_row_with_an_image_is_image_to_video(tmp_path: Path) -> None:
    """The image is checked and found like a row's video: relative to the prompt list's folder on the
    command line (an allowed folder), refused with the one message anywhere else."""
    row = image_row({"prompt": "x", "model": "tiny-wan-i2v", "image": "a.png"})
    assert row["task"] == "i2v" and image_row({"prompt": "x"}) == {"prompt": "x"}
    picture(tmp_path / "a.png")
    found = resolve_row_files(row, [], tmp_path / "outputs", [tmp_path], relative_to=tmp_path)
    assert found["image"] == str((tmp_path / "a.png").resolve())
    request = parse_request(found)
    assert isinstance(request, I2VRequest) and json.dumps(request.to_dict())
    with pytest.raises(ConfigError, match="image: not a file this batch may use"):
        resolve_row_files(row | {"image": "/etc/hostname"}, [], tmp_path / "outputs", [tmp_path])


def test_a_lora_applies_to_image_to_video_and_is_recorded(settings: Settings, tmp_path: Path) -> None:
    """Image to video shares text to video's LoRA path (``run_wan``): a LoRA for the tiny Wan DiT loads
    into the tiny I2V model's blocks and goes into the record."""
    folder = tmp_path / "loras"
    write_lora(folder, "style.safetensors", tiny_lora("comfyui"))
    runner = Runner(replace(settings, loras_dir=folder), torch.device("cpu"))
    start = picture(tmp_path / "start.png")
    record = run(
        runner,
        {
            "model": "tiny-wan-i2v",
            "image": str(start),
            "steps": 2,
            "loras": [{"name": "style", "strength": 0.7}],
        },
    )
    (entry,) = record["loras"]
    assert (entry["name"], entry["strength"]) == ("style", 0.7) and len(entry["sha256"]) == 64
    assert probe_video(Path(record["path"])).frames == record["frames"]
