"""The Continue video tab: it builds, and its form values become a valid continuation request."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.continuation import ContinueRequest
from core.settings import Settings
from core.studio import Studio
from ui.continue_tab import build_continue_tab, cache_from_controls, describe_input, request_data
from weights.registry import get_card

pytest_plugins = ["tests.conftest_continue"]


def test_tab_builds_with_the_continue_models(continue_settings: Settings) -> None:
    studio = Studio(continue_settings)
    try:
        with gr.Blocks() as demo:
            clip = build_continue_tab(studio).source
        model = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model")
        ids = [value for _, value in model.choices]
        assert "skyreels-v2-df-1.3b-540p" in ids and "tiny-skyreels-df" in ids
        assert isinstance(clip, gr.Video) and clip.label == "Clip to extend"
    finally:
        studio.shutdown()


def test_form_values_make_a_valid_request(clip_with_audio: Path) -> None:
    data = request_data(
        get_card("tiny-skyreels-df"),
        str(clip_with_audio),
        "a cat",
        "",
        0.5,
        False,
        0,
        0,
        0,
        0,
        20,
        2,
        6.0,
        0,
        5,
        "auto",
        "Fast",
        None,
    )
    assert data.pop("task") == "continue"
    request = ContinueRequest(**data)
    assert request.continuation_only and request.add_frames == 12 and request.cache["threshold"] == 0.1
    assert request.overlap_history == 9 and request.shift is None


def test_controls_and_input_description(clip_with_audio: Path, tmp_path: Path) -> None:
    assert cache_from_controls("Off", None) is None
    assert cache_from_controls("Faster", None) == {"preset": "faster"}
    assert cache_from_controls("Off", 0.2) == {"method": "flowcache", "threshold": 0.2}
    assert describe_input(str(clip_with_audio), "tiny-skyreels-df", 0) == (
        "input 80x60 30 fps → 48x32 24 fps, using last 9 frames"
    )
    (tmp_path / "x.mp4").write_text("no")
    message = describe_input(str(tmp_path / "x.mp4"), "tiny-skyreels-df", 0)
    assert message.startswith("⚠️ x.mp4 could not be read")
