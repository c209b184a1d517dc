"""The text-to-video tab hands the API's values to the core as given: a bad one gets a clear message,
never a nearby value that runs instead (frames, resolution, seed, cache threshold)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest

from core.caches.config import parse_cache_config
from core.facade import Facade
from core.facade.encode import resolution_size
from core.facade.encode import step_cache as cache_dict_from_controls
from core.facade.text import seconds_label
from core.settings import Settings
from core.tasks import parse_request
from core.validation import ConfigError
from ui.t2v_tab import build_t2v_tab
from weights.registry import get_card


@pytest.fixture
def t2v_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[gr.Blocks, list[dict[str, Any]]]:
    """The tab built for the dev models, its job submission replaced by a list of the requests."""
    studio = SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True), dispatcher=None)
    with gr.Blocks() as demo:
        build_t2v_tab(Facade(studio))
    submitted: list[dict[str, Any]] = []

    def run_job(facade, task, values, outputs, progress):
        submitted.append(facade.request(task, values))
        yield {}

    monkeypatch.setattr("ui.t2v_tab.run_job", run_job)
    return demo, submitted


def call(demo: gr.Blocks, **values: Any) -> None:
    run = next(f.fn for f in demo.fns.values() if f.api_name == "t2v")
    args = {
        "model_id": "tiny-wan",
        "prompt_text": "a boat",
        "negative_text": "",
        "resolution_label": "64x64",
        "frame_count": 9,
        "step_count": 1,
        "guidance_scale": 1.0,
        "flow_shift": 0,
        "seed_value": 1,
    }
    list(run(**(args | values)))


def test_frames_reach_the_core_as_given(t2v_app) -> None:
    demo, submitted = t2v_app
    call(demo, frame_count=10)
    call(demo, frame_count=1440)
    call(demo, frame_count=13.0)
    assert [data["frames"] for data in submitted] == [10, 1440, 13.0]
    with pytest.raises(ConfigError, match=r"frames must be 4k\+1 \(e.g. 9\), got 10"):
        parse_request(submitted[0])
    with pytest.raises(ConfigError, match="frames must be between 1 and 33, got 1440"):
        parse_request(submitted[1])
    assert parse_request(submitted[2]).frames == 13


def test_the_frames_slider_follows_the_model(tmp_path: Path) -> None:
    facade = Facade(SimpleNamespace(settings=Settings(outputs_dir=tmp_path, dev=True), dispatcher=None))
    frames = facade.form("t2v", "tiny-wan")["frame_count"]
    assert frames["maximum"] == 33 and frames["value"] == 9
    assert facade.form("t2v", "wan2.2-ti2v-5b")["frame_count"]["maximum"] == 121
    assert "maximum" not in facade.form("t2v", "tiny-magi")["frame_count"]  # hidden: MAGI-1 counts chunks
    card = get_card("tiny-wan")
    assert seconds_label(9, card) == "9 frames = 0.56 s at 16 fps"
    assert seconds_label(1437, card) == "⚠️ Tiny Wan (test model) makes at most 33 frames"


def test_a_resolution_must_be_a_preset_or_exactly_width_x_height() -> None:
    card = get_card("tiny-wan")
    preset = card.resolutions[0]
    assert resolution_size(card, preset.label) == (preset.width, preset.height)
    assert resolution_size(card, preset.name) == (preset.width, preset.height)
    assert resolution_size(card, "64x48") == resolution_size(card, " 64 x 48 ") == (64, 48)
    for text in ("-64x48", "64x48px", "64x-48", "a64x48", "64x48x32", "6.4x48", "", None):
        with pytest.raises(ConfigError, match="give WIDTHxHEIGHT"):
            resolution_size(card, text)


def test_a_negative_resolution_is_refused_through_the_tab(t2v_app) -> None:
    demo, submitted = t2v_app
    with pytest.raises(ConfigError, match="'-64x48'"):
        call(demo, resolution_label="-64x48")
    assert submitted == []


def test_a_seed_with_a_fraction_is_refused_not_rounded(t2v_app) -> None:
    """The seed box does not round (a seed of 1.5 would run as 2): the core refuses the fraction."""
    demo, submitted = t2v_app
    [seed] = [b for b in demo.blocks.values() if getattr(b, "label", None) == "Seed (-1 = random)"]
    assert seed.preprocess(1.5) == 1.5 and seed.preprocess(-1) == -1
    call(demo, seed_value=1.5)
    with pytest.raises(ConfigError, match=r"seed must be a whole number, got 1\.5"):
        parse_request(submitted[-1])


def test_a_threshold_with_the_auto_method_is_checked_not_replaced() -> None:
    """Auto means the presets' method: a threshold beside it is that method's, within its range."""
    card = get_card("tiny-wan")
    data = cache_dict_from_controls("Fast", "auto", 1e9)
    assert data == {"method": "teacache", "threshold": 1e9}
    with pytest.raises(
        ConfigError, match=r"teacache threshold must be between 0.0 and 10.0, got 1000000000.0"
    ):
        parse_cache_config(data, card)
    config = parse_cache_config(cache_dict_from_controls("Off", "auto", 0.5), card)
    assert (config.method, config.threshold) == ("teacache", 0.5)
    assert cache_dict_from_controls("Fast", "auto", None) == {"preset": "fast"}
    with pytest.raises(ConfigError, match=r"first_block threshold must be between 0.0 and 1.0"):
        parse_cache_config(cache_dict_from_controls("Fast", "first_block", 3.0), card)
