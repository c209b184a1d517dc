"""The app's layout: tabs linked by send buttons, uploads swept from the temp folder."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.settings import Settings
from core.studio import Studio
from ui.app import build_app


def test_uploads_are_swept_from_the_temp_folder(models_dir: Path, tmp_path: Path) -> None:
    studio = Studio(Settings(outputs_dir=tmp_path, models_dir=models_dir, offline=True))
    try:
        assert build_app(studio).delete_cache == (3600, 86400)
    finally:
        studio.shutdown()


def test_every_result_can_be_sent_to_continue_and_upscale(models_dir: Path, tmp_path: Path) -> None:
    studio = Studio(Settings(outputs_dir=tmp_path, models_dir=models_dir, offline=True, dev=True))
    try:
        demo = build_app(studio)
        buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button)]
        # text to video, image to video, continue, upscale, long video
        assert sum(b.value == "Continue this" for b in buttons) == 5
        assert sum(b.value == "Upscale this" for b in buttons) == 5
        assert sum(b.value == "Last frame → Image to video" for b in buttons) == 5
        targets = {
            demo.blocks[fn.outputs[0]._id].label
            for fn in demo.fns.values()
            if fn.inputs and getattr(fn.inputs[0], "label", None) == "Result" and fn.outputs
        }
        assert targets == {"Clip to extend", "Input video", "Start image"}
    finally:
        studio.shutdown()


def test_public_api_endpoints_are_the_documented_ones(models_dir: Path, tmp_path: Path) -> None:
    """The README and docs/api.md list these; a component with a callable value would add its own."""
    studio = Studio(Settings(outputs_dir=tmp_path, models_dir=models_dir, offline=True, dev=True))
    try:
        named = set(build_app(studio).get_api_info()["named_endpoints"])
    finally:
        studio.shutdown()
    assert named == {
        f"/{name}"
        for name in (
            "t2v",
            "i2v",
            "continue",
            "upscale",
            "long_video",
            "batch",
            "compare",
            "history",
            "history_gallery",
            "rerun_settings",
            "rerun_form",
            "delete_result",
            "list_models",
            "download_model",
            "cancel_download",
            "delete_model",
            "list_loras",
            "download_lora",
            "cancel_job",
        )
    }
