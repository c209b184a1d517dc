"""The Upscale tab builds, and tells the user the final size before the job runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from core.facade import Facade
from core.facade.forms import split_field, upscale_form
from core.facade.text import size_preview
from core.settings import Settings
from ui.upscale_tab import build_upscale_tab
from weights.registry import get_card


def model_controls(card):
    """(description, scale, variant) properties for ``card``."""
    form = upscale_form(card)
    return form["about"].value, form["scale_value"].props(), form["variant_value"].props()


def split_control(model, gpus):
    return split_field(model, gpus).props()


pytest_plugins = ["tests.conftest_upscale"]


def test_size_preview_names_the_aligned_output(clip_64: Path) -> None:
    text = size_preview(str(clip_64), 4, None, None)
    assert "**256x256**" in text and "30 frames" in text and "with its audio" in text
    assert "**128x128**" in size_preview(str(clip_64), 4, 32, None)
    assert "Cannot upscale" in size_preview(str(clip_64), 2, 40, None)
    padded = size_preview(str(clip_64), 2, 40, None, "pad")  # 80x80 kept, the model sees 128x128
    assert "**80x80**" in padded and "padded to 128x128" in padded
    assert "choose a video" in size_preview(None, 4, None, None)


def test_real_esrgan_models_keep_the_whole_frame_and_offer_their_scales(clip_64: Path) -> None:
    assert "**160x160**" in size_preview(str(clip_64), 4, 40, "tiny-esrgan")
    description, scale, variant = model_controls(get_card("realesrgan-x2plus"))
    assert "x2" in description and scale["choices"] == ["2"] and scale["value"] == "2"
    assert variant["visible"] is False
    _, scale, variant = model_controls(get_card("flashvsr-v1.1"))
    assert scale["choices"] == ["2", "4"] and scale["value"] == "4" and variant["visible"] is True
    assert "**256x256**" in size_preview(str(clip_64), "4", None, None)  # the radio's value is text


def test_tab_builds_with_the_dev_models(tmp_path: Path) -> None:
    studio = SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True))
    with gr.Blocks() as demo:
        source = build_upscale_tab(Facade(studio)).source
    model = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model")
    assert isinstance(source, gr.Video) and source.label == "Input video"
    assert model.value == "tiny-esrgan"  # --dev opens every tab on a tiny model
    assert ("Tiny FlashVSR (test model)", "tiny-flashvsr") in model.choices
    assert ("Real-ESRGAN general v3 (fastest)", "realesr-general-x4v3") in model.choices


def build_with(studio) -> tuple[gr.Blocks, gr.Checkbox]:
    with gr.Blocks() as demo:
        build_upscale_tab(Facade(studio))
    [split] = [b for b in demo.blocks.values() if isinstance(b, gr.Checkbox) and "2 GPUs" in b.label]
    return demo, split


def test_the_two_gpu_split_shows_only_with_several_gpus_and_flashvsr(tmp_path: Path) -> None:
    settings = Settings(outputs_dir=tmp_path)
    gpus = SimpleNamespace(gpus=[SimpleNamespace(total_gb=80.0)] * 2)  # the tab opens on FlashVSR
    _, alone = build_with(SimpleNamespace(settings=settings, dispatcher=None, hardware=gpus))
    _, two_gpus = build_with(SimpleNamespace(settings=settings, dispatcher=object(), hardware=gpus))
    assert alone.visible is False and two_gpus.visible is True and two_gpus.value is False
    assert split_control("tiny-flashvsr", gpus=True) == {"visible": True}
    hidden = {"visible": False, "value": False}
    assert split_control("realesr-general-x4v3", gpus=True) == hidden
    assert split_control("flashvsr-v1.1", gpus=False) == hidden


def test_the_split_is_an_optional_trailing_api_input(tmp_path: Path, clip_64: Path, monkeypatch) -> None:
    studio = SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True), dispatcher=object())
    demo, _ = build_with(studio)
    parameters = demo.get_api_info()["named_endpoints"]["/upscale"]["parameters"]
    names = [p["parameter_name"] for p in parameters][-4:]
    assert names == ["seed_value", "split_gpus", "fit_value", "interpolation"]
    assert parameters[-3]["parameter_has_default"] and parameters[-3]["parameter_default"] is False
    assert parameters[-2]["parameter_default"] == "pad"
    assert parameters[-1]["parameter_has_default"] and parameters[-1]["parameter_default"] == ""
    submitted = []

    def run_job(facade, task, values, outputs, progress):
        submitted.append(facade.request(task, values)["pipeline_gpus"])
        yield {}

    monkeypatch.setattr("ui.upscale_tab.run_job", run_job)
    run = next(f.fn for f in demo.fns.values() if f.api_name == "upscale")
    old_call = (str(clip_64), "tiny-flashvsr", 2, "tiny-long", 0, 8, 0)
    list(run(*old_call))
    list(run(*old_call, True))
    assert submitted == [1, 2]


def test_the_scale_is_advertised_and_accepted_as_text(tmp_path: Path, monkeypatch) -> None:
    """view_api shows ``Literal['2', '4']``: "4" is what it takes, sent to the core as 4."""
    demo, _ = build_with(SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True), dispatcher=None))
    parameters = demo.get_api_info()["named_endpoints"]["/upscale"]["parameters"]
    types = {p["parameter_name"]: p["python_type"]["type"] for p in parameters}
    assert types["scale_value"] == "Literal['2', '4']"
    [scale] = [b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Scale"]
    assert scale.value == "4" and scale.preprocess("4") == "4" and scale.preprocess("2") == "2"
    for bad in ("3", "four"):
        with pytest.raises(gr.Error, match="not in the list of choices"):
            scale.preprocess(bad)
    submitted = []

    def run_job(facade, task, values, outputs, progress):
        submitted.append(facade.request(task, values)["scale"])
        yield {}

    monkeypatch.setattr("ui.upscale_tab.run_job", run_job)
    run = next(f.fn for f in demo.fns.values() if f.api_name == "upscale")
    list(run("clip.mp4", "tiny-flashvsr", "4", "tiny-long", 0, 8, 0))
    list(run("clip.mp4", "tiny-flashvsr", "2", "tiny-long", 0, 8, 0))
    assert submitted == [4, 2]
