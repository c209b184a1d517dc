"""The Continue video tab: it builds, and its form values become a valid continuation request."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from core.continuation import ContinueRequest
from core.facade import Facade
from core.facade.encode import chunk_cache as cache_from_controls
from core.facade.encode import continue_request
from core.settings import Settings
from core.studio import Studio
from ui.continue_tab import build_continue_tab

pytest_plugins = ["tests.conftest_continue"]


def test_tab_builds_with_the_continue_models(continue_settings: Settings) -> None:
    studio = Studio(continue_settings)
    try:
        with gr.Blocks() as demo:
            clip = build_continue_tab(Facade(studio)).source
        model = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model")
        ids = [value for _, value in model.choices]
        assert "skyreels-v2-df-1.3b-540p" in ids and "tiny-skyreels-df" in ids
        assert isinstance(clip, gr.Video) and clip.label == "Clip to extend"
    finally:
        studio.shutdown()


def test_form_values_make_a_valid_request(clip_with_audio: Path) -> None:
    data = continue_request(
        {
            "model_id": "tiny-skyreels-df",
            "video_path": str(clip_with_audio),
            "prompt_text": "a cat",
            "negative_text": "",
            "seconds_to_add": 0.5,
            "keep": False,
            "overlap_frames": 0,
            "ar": 0,
            "block_size": 0,
            "window_frames": 0,
            "noise_level": 20,
            "step_count": 2,
            "guidance_scale": 6.0,
            "flow_shift": 0,
            "seed_value": 5,
            "level": "auto",
            "speed_preset": "Fast",
            "cache_threshold": None,
        }
    )
    assert data.pop("task") == "continue"
    request = ContinueRequest(**data)
    assert request.continuation_only and request.add_frames == 12 and request.cache["threshold"] == 0.1
    assert request.overlap_history == 9 and request.shift is None


def test_controls_and_input_description(clip_with_audio: Path, tmp_path: Path) -> None:
    describe_input = Facade(SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True))).describe_clip
    assert cache_from_controls("Off", None) is None
    assert cache_from_controls("Faster", None) == {"preset": "faster"}
    assert cache_from_controls("Off", 0.2) == {"method": "flowcache", "threshold": 0.2}
    assert describe_input(str(clip_with_audio), "tiny-skyreels-df", 0) == (
        "input 80x60 30 fps → 48x32 24 fps, using last 9 frames"
    )
    (tmp_path / "x.mp4").write_text("no")
    message = describe_input(str(tmp_path / "x.mp4"), "tiny-skyreels-df", 0)
    assert message.startswith("⚠️ x.mp4 could not be read")


def test_a_start_image_beside_the_clip_one_at_a_time(continue_settings: Settings, tmp_path: Path) -> None:
    from PIL import Image

    studio = Studio(continue_settings)
    try:
        with gr.Blocks() as demo:
            clip = build_continue_tab(Facade(studio)).source
        image = next(b for b in demo.blocks.values() if isinstance(b, gr.Image))
        assert image.label == "…or a start image" and image.type == "filepath"
        clears = {
            (fn.inputs[0]._id, fn.outputs[0]._id): fn.fn
            for fn in demo.fns.values()
            if len(fn.inputs) == 1 and len(fn.outputs) == 1 and fn.inputs[0] in (clip, image)
        }
        assert clears[(clip._id, image._id)]("clip.mp4") is None  # a clip clears the picture
        assert clears[(image._id, clip._id)]("photo.png") is None  # a picture clears the clip
        assert clears[(clip._id, image._id)](None) == gr.update()  # clearing one leaves the other
    finally:
        studio.shutdown()
    Image.new("RGB", (64, 48)).save(tmp_path / "start.png")
    values = {"model_id": "tiny-skyreels-df", "video_path": None, "image_path": str(tmp_path / "start.png")}
    values |= {"prompt_text": "a cat", "negative_text": "", "seconds_to_add": 0.5, "keep": True}
    values |= {"overlap_frames": 0, "ar": 0, "block_size": 0, "window_frames": 0, "noise_level": 20}
    values |= {"step_count": 2, "guidance_scale": 6.0, "flow_shift": 0, "seed_value": 5, "level": "auto"}
    data = continue_request(values | {"speed_preset": "Off", "cache_threshold": None})
    data.pop("task")
    request = ContinueRequest(**data)
    assert (request.video, request.image) == ("", str(tmp_path / "start.png"))
