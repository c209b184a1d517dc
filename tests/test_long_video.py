"""Long video (issue 29): a prompt and seed per part, colour kept between parts, frame interpolation, and
the live latent preview of Wan and SkyReels runs."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from core.color_match import colour_drift, lab_stats, match_frames
from core.interpolate import BlendInterpolator, FlowInterpolator, interpolate_video
from core.jobs import Job
from core.pipelines import load_diffusers_pipeline
from core.preview import LatentPreview
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import generate_t2v
from core.validation import ConfigError
from core.video_io import probe_video, read_record
from tests.test_chain import run
from weights.registry import get_card

pytest_plugins = ["tests.conftest_magi_app"]

T2V = {"model": "tiny-wan", "prompt": "a boat", "width": 64, "height": 64, "frames": 9, "steps": 1, "seed": 4}


def textured(seed: int, frames: int = 6, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((frames, *size, 3)), (0, 2, 2, 0))
    base = (base - base.min()) / (base.max() - base.min())
    return (40 + base * 170).astype(np.uint8)


def test_matching_removes_a_colour_cast() -> None:
    reference = textured(0)
    cast = np.clip(textured(1).astype(int) * [1.25, 0.95, 0.7] + [20, 0, -10], 0, 255).astype(np.uint8)
    stats = lab_stats(reference)
    before = colour_drift(cast, stats)
    after = colour_drift(match_frames(cast, stats, 1.0), stats)
    half = colour_drift(match_frames(cast, stats, 0.5), stats)
    assert before > 10 and after < 0.1 * before and after < half < before
    assert np.array_equal(match_frames(cast, stats, 0.0), cast)


def test_per_part_prompts_and_seeds() -> None:
    chain = parse_request(
        {
            "task": "chain",
            "t2v": T2V,
            "continuations": 3,
            "seconds": 1,
            "continue_model": "tiny-skyreels-df",
            "prompts": ["", "a storm", ""],
            "seeds": [7, -1, 99],
        }
    )
    assert chain.first.prompt == "a boat" and chain.first.seed == 7
    assert [chain.part_prompt(i) for i in range(4)] == ["a boat", "a storm", "a storm", "a storm"]
    assert [chain.part_seed(i, 7) for i in (1, 2, 3)] == [8, 99, 10]
    old = parse_request(
        {
            "task": "chain",
            "t2v": T2V,
            "continuations": 2,
            "seconds": 1,
            "continue_model": "tiny-skyreels-df",
            "continue_prompt": "rain",
        }
    )
    assert [old.part_prompt(i) for i in range(3)] == ["a boat", "rain", "rain"]
    with pytest.raises(ConfigError, match="3 prompts for 2 parts"):
        parse_request(
            {
                "task": "chain",
                "t2v": T2V,
                "continuations": 1,
                "seconds": 1,
                "continue_model": "tiny-skyreels-df",
                "prompts": ["a", "b", "c"],
            }
        )


def test_a_chain_takes_rife_and_refuses_unknown_methods() -> None:
    chain = {
        "task": "chain",
        "t2v": T2V,
        "continuations": 1,
        "seconds": 1,
        "continue_model": "tiny-skyreels-df",
    }
    assert parse_request(chain | {"interpolate": "rife"}).interpolate == "rife"
    with pytest.raises(ConfigError, match="interpolate must be one of rife, flow, blend"):
        parse_request(chain | {"interpolate": "film"})


def test_flow_interpolation_follows_motion_better_than_blending() -> None:
    base = textured(3, frames=1, size=(80, 140))[0]
    first, middle, second = (base[8:72, 10 + s : 106 + s] for s in (0, 3, 6))
    errors = {
        m.name: np.abs(m.middle(first, second).astype(float) - middle)[8:-8, 8:-8].mean()
        for m in (FlowInterpolator(), BlendInterpolator())
    }
    assert errors["flow"] < 0.7 * errors["blend"]


def test_interpolation_doubles_frames_and_fps_and_keeps_sound(clip_with_sound: Path, tmp_path: Path) -> None:
    target = tmp_path / "double.mp4"
    result = interpolate_video(clip_with_sound, target, "blend", record={"task": "x"})
    info = probe_video(target)
    assert (info.frames, info.fps) == (2 * result.from_frames, 2 * result.from_fps) == (80, 60.0)
    with av.open(str(target)) as container:
        assert container.streams.audio
    assert read_record(target)["interpolation"]["method"] == "blend"


def test_chain_with_prompts_matches_colours_and_interpolates(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []

    def show(job: Job, path: str) -> None:
        assert Path(path).is_file()
        shown.append(path)

    monkeypatch.setattr(Job, "show_preview", show)
    record = run(
        settings,
        {
            "task": "chain",
            "t2v": T2V | {"steps": 5},
            "continuations": 2,
            "seconds": 1,
            "continue_model": "tiny-skyreels-df",
            "prompts": ["a boat", "a storm"],
            "seeds": [4, 11],
            "interpolate": "blend",
        },
    )
    continued = record["parts"][1:]
    assert [p["prompt"] for p in record["parts"]] == ["a boat", "a storm", "a storm"]
    assert [p["seed"] for p in record["parts"]] == [4, 11, 6]
    for part in continued:
        match = part["color_match"]
        assert match["strength"] == 0.8 and match["drift_after"] <= match["drift_before"]
    assert record["color_match"]["strength"] == 0.8
    info = probe_video(Path(record["path"]))
    assert record["interpolation"]["from_fps"] == 24.0 and info.fps == 48.0
    assert info.frames == record["frames"] == 2 * (13 + 2 * 24)
    sidecar = json.loads(Path(record["path"]).with_suffix(".json").read_text())
    assert sidecar["interpolation"]["frames"] == info.frames
    assert any("-latent-" in p for p in shown)  # the t2v part (5 steps) and the continuations preview


def test_preview_changes_no_frame(models_dir: Path, tmp_path: Path) -> None:
    pipe = load_diffusers_pipeline(get_card("tiny-wan"), models_dir / "tiny-wan", torch.device("cpu"), 0)
    request = parse_request(T2V | {"task": "t2v", "steps": 9})
    shown: list[str] = []

    class Watched(Job):
        def show_preview(self, path: str) -> None:
            assert Path(path).is_file() and probe_video(Path(path)).frames == 3
            shown.append(path)

    job = Watched(request)
    preview = LatentPreview(tmp_path / "previews", job, 16)
    with_preview = generate_t2v(pipe, request, job, preview)
    assert len(shown) == 2  # after steps 4 and 8 of 9
    without = generate_t2v(pipe, request, job)
    assert np.array_equal(with_preview, without)


def test_long_video_form_sends_part_prompts_and_interpolation() -> None:
    from core.facade.encode import chain_request

    values = {
        "model_id": "tiny-wan",
        "prompt_text": "a boat",
        "resolution_label": "64x64",
        "frame_count": 9,
        "step_count": 1,
        "seed_value": 1,
        "continue_id": "tiny-skyreels-df",
        "continuation_count": 2,
        "seconds_each": 1,
        "upscale_id": "",
        "factor": "4",
    }
    assert "prompts" not in chain_request(values | {"part_prompts": "\n  \n"})
    sent = chain_request(values | {"part_prompts": "a boat\n\na storm\n", "interpolation": "flow"})
    assert sent["prompts"] == ["a boat", "", "a storm"] and sent["interpolate"] == "flow"
    chain = parse_request(sent)
    assert [chain.part_prompt(i) for i in range(3)] == ["a boat", "a boat", "a storm"]
    assert "seeds" not in chain_request(values | {"part_seeds": " , ,"})
    seeded = parse_request(chain_request(values | {"part_seeds": "7, , 9\n"}))
    assert seeded.seeds == (7, -1, 9) and seeded.first.seed == 7
    assert [seeded.part_seed(i, 7) for i in (1, 2)] == [8, 9]  # blank: derived from the first
    with pytest.raises(ConfigError, match="not a whole number"):
        chain_request(values | {"part_seeds": "7, x"})


def test_a_long_video_can_start_from_an_image(settings: Settings, tmp_path: Path) -> None:
    """The first part is image to video when the chain's first mapping names an image (and its model
    takes one); a text-only model with an image, or an image model without one, is refused clearly."""
    start = tmp_path / "start.png"
    Image.new("RGB", (96, 64), (30, 120, 200)).save(start)
    first = {"model": "tiny-wan-i2v", "prompt": "a lake", "image": str(start), "frames": 9, "steps": 1}
    chain = {"task": "chain", "t2v": first, "continuations": 0, "upscale_model": "tiny-esrgan"}
    chain |= {"upscale_scale": 2}
    record = run(settings, chain)
    (made, upscaled) = record["parts"]
    assert made["task"] == "i2v" and upscaled["task"] == "upscale"
    assert probe_video(Path(record["path"])).frames == 9
    with pytest.raises(ConfigError, match="makes video from text"):
        parse_request(chain | {"t2v": first | {"model": "tiny-wan"}})
    with pytest.raises(ConfigError, match="starts from a picture: give a start image"):
        parse_request(chain | {"t2v": {k: v for k, v in first.items() if k != "image"}})
