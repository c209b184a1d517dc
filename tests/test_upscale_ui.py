"""The Upscale tab builds, and tells the user the final size before the job runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from core.settings import Settings
from ui.upscale_tab import build_upscale_tab, size_preview

pytest_plugins = ["conftest_upscale"]


def test_size_preview_names_the_aligned_output(clip_64: Path) -> None:
    text = size_preview(str(clip_64), 4, None)
    assert "**256x256**" in text and "30 frames" in text and "with its audio" in text
    assert "**128x128**" in size_preview(str(clip_64), 4, 32)
    assert "Cannot upscale" in size_preview(str(clip_64), 2, 40)
    assert "choose a video" in size_preview(None, 4, None)


def test_tab_builds_with_the_dev_models(tmp_path: Path) -> None:
    studio = SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True))
    with gr.Blocks() as demo:
        source = build_upscale_tab(studio).source
    model = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model")
    assert isinstance(source, gr.Video) and source.label == "Input video"
    assert model.value == "flashvsr-v1.1"
    assert ("Tiny FlashVSR (test model)", "tiny-flashvsr") in model.choices
