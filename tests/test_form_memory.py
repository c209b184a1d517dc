"""Remembered settings (restored through the facade, stale values dropped) and "Use these settings again"
(a record's request back to the tab's form values: encoding them makes the same request)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from core.facade import Facade
from core.facade.memory import REMEMBERED, remembered
from core.facade.rerun import loras_text, read_file_record
from core.settings import Settings
from core.tasks import parse_request
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_continue"]


@pytest.fixture
def facade(tmp_path: Path) -> Facade:
    settings = Settings(outputs_dir=tmp_path, models_dir=tmp_path / "models", offline=True, dev=True)
    return Facade(SimpleNamespace(settings=settings, dispatcher=None))


def start_values(facade: Facade, task: str, model: str | None = None, **changes: Any) -> dict[str, Any]:
    """The tab's values at start for ``model`` (its form loaded), with ``changes``."""
    props = facade.inputs(task)
    model = model or props["model_id"]["value"]
    props |= {n: dict(props.get(n, {})) | p for n, p in facade.form(task, model).items()}
    values = {name: p.get("value") for name, p in props.items()} | {"model_id": model}
    return values | changes


def parsed(facade: Facade, task: str, values: dict[str, Any]) -> dict[str, Any]:
    return parse_request(facade.request(task, values)).to_dict()


def assert_round_trip(facade: Facade, task: str, values: dict[str, Any]) -> dict[str, Any]:
    """The recorded request of ``values`` decodes to form values of the same tab that encode to it."""
    recorded = parsed(facade, task, values)
    form = facade.memory.rerun_form({"request": recorded})
    assert form["tab"] == task
    assert parsed(facade, task, values | form["values"]) == recorded
    assert (
        parsed(facade, task, start_values(facade, task, form["values"]["model_id"]) | form["values"])
        == recorded
    )
    return form["values"]


@pytest.fixture
def picture(tmp_path: Path) -> str:
    path = tmp_path / "start.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(path)
    return str(path)


def test_text_to_video_requests_come_back_as_the_tabs_values(facade: Facade) -> None:
    base = start_values(facade, "t2v", prompt_text="a cat", seed_value=7)
    assert_round_trip(facade, "t2v", base)
    values = assert_round_trip(
        facade,
        "t2v",
        base
        | {"speed_preset": "Faster", "method": "teacache", "threshold": 0.2, "turbo": True, "level": "3"}
        | {"compile_choice": "off", "resolution_label": "80x48", "frame_count": 13, "flow_shift": 2.5},
    )
    assert values["resolution_label"] == "80x48" and values["frame_count"] == 13 and values["seed_value"] == 7
    loras = assert_round_trip(facade, "t2v", base | {"loras_text": "style.safetensors:0.8, detail:1:high"})
    assert loras["loras_text"] == "style.safetensors:0.8, detail:1:high"
    assert_round_trip(facade, "t2v", base | {"few_step": True, "first_step_guidance": 3.5})
    fast = start_values(facade, "t2v", "wan2.1-t2v-14b", prompt_text="a cat", seed_value=7)
    fast = assert_round_trip(facade, "t2v", fast | {"few_step": True, "loras_text": "style:0.8"})
    assert fast["loras_text"] == "style:0.8"  # the step-distill LoRA the fast mode adds is not typed in
    distill = "loras__Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"
    weaker = assert_round_trip(facade, "t2v", fast | {"loras_text": f"{distill}:0.6, style:0.8"})
    assert weaker["loras_text"] == f"{distill}:0.6, style:0.8"  # the preset's LoRA at another strength
    preset = parsed(facade, "t2v", fast | weaker)["loras"][0]
    assert preset["repo"].startswith("lightx2v/") and preset["strength"] == 0.6 and preset["fuse"] is True
    hub = {"name": "sub/style.safetensors", "repo": "someone/loras", "strength": 0.123456789}
    assert loras_text([hub]) == "sub__style.safetensors:0.123456789"  # fetched: its folder name, exact


def test_magi_and_image_to_video_requests_come_back(facade: Facade, picture: str) -> None:
    magi = start_values(facade, "t2v", "tiny-magi", prompt_text="waves", seed_value=3, chunks=2)
    values = assert_round_trip(facade, "t2v", magi | {"chunk_speed": "Fast", "kv_budget": 512})
    assert values["chunks"] == 2 and values["chunk_speed"] == "Fast"
    image = start_values(facade, "i2v", image_path=picture, prompt_text="turns", seed_value=2)
    assert assert_round_trip(facade, "i2v", image)["image_path"] == picture


def test_continue_upscale_and_long_video_requests_come_back(facade: Facade, clip_with_audio: Path) -> None:
    clip = str(clip_with_audio)
    sky = start_values(
        facade, "continue", "tiny-skyreels-df", video_path=clip, prompt_text="on", seed_value=4
    )
    assert_round_trip(facade, "continue", sky | {"cache_threshold": 0.3, "keep": False, "noise_level": 10})
    magi = start_values(facade, "continue", "tiny-magi", video_path=clip, prompt_text="on", seed_value=4)
    assert_round_trip(facade, "continue", magi | {"speed_preset": "Fast"})
    up = start_values(facade, "upscale", "tiny-esrgan", video_path=clip, seed_value=1)
    assert_round_trip(facade, "upscale", up)
    chain = start_values(
        facade, "long_video", prompt_text="a walk", seed_value=9, continuation_count=1, frame_count=17
    )
    assert_round_trip(
        facade,
        "long_video",
        chain | {"upscale_id": "tiny-esrgan", "factor": "2", "continue_id": "tiny-skyreels-df"},
    )


def test_a_gone_input_file_is_left_empty_with_a_note(facade: Facade, clip_with_audio: Path) -> None:
    up = start_values(facade, "upscale", "tiny-esrgan", video_path=str(clip_with_audio), seed_value=1)
    request = parsed(facade, "upscale", up) | {"video": "/nowhere/clip.mp4"}
    form = facade.memory.rerun_form({"request": request})
    assert form["values"]["video_path"] is None and "clip.mp4" in form["notes"][0]


def test_a_dropped_file_without_a_record_is_refused_with_what_to_do(tmp_path: Path, facade: Facade) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    with pytest.raises(ConfigError, match="not a generation record"):
        read_file_record(other)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(ConfigError, match="drop an mp4"):
        facade.memory.rerun_file(str(junk))


def test_stored_settings_restore_the_form_through_the_facade(facade: Facade) -> None:
    values = start_values(facade, "t2v", "tiny-wan-alt", prompt_text="not kept")
    values |= {"frame_count": 13, "level": "2", "speed_preset": "Fast", "loras_text": "style:0.5"}
    stored = facade.memory.store({"upscale": {"quality_value": 5}}, "t2v", values)
    assert set(stored["t2v"]) <= set(REMEMBERED["t2v"]) and "prompt_text" not in stored["t2v"]
    stored = json.loads(json.dumps(stored))  # as the browser keeps it
    props, dropped = facade.memory.restore("t2v", stored)
    assert dropped == []
    expected = {"model_id": "tiny-wan-alt", "frame_count": 13, "level": "2", "speed_preset": "Fast"}
    assert {n: props[n]["value"] for n in expected} == expected
    assert props["loras_text"]["value"] == "style:0.5"
    assert props["resolution_label"]["choices"]  # the stored model's form comes with its values
    assert facade.memory.restore("upscale", stored)[0]["quality_value"]["value"] == 5


def test_stale_stored_settings_are_dropped(facade: Facade) -> None:
    values = remembered("t2v", start_values(facade, "t2v", "tiny-wan"))
    gone, _ = facade.memory.restore("t2v", {"t2v": values | {"model_id": "no-such-model"}})
    opening = facade.inputs("t2v")["model_id"]["value"]
    assert gone == facade.form("t2v", opening)  # nothing kept: the page opens on the opening model's form
    too_long = values | {
        "frame_count": 4001,
        "resolution_label": "huge",
        "level": "9",
        "loras_text": "a:b:c:d",
    }
    props, dropped = facade.memory.restore("t2v", {"t2v": too_long | {"speed_preset": "Warp"}})
    assert set(dropped) == {"frame_count", "resolution_label", "level", "loras_text", "speed_preset"}
    assert props["model_id"]["value"] == "tiny-wan" and "value" not in props.get("level", {})
    off_step = facade.memory.restore("t2v", {"t2v": values | {"frame_count": 10}})[1]
    assert off_step == ["frame_count"]
    assert facade.memory.restore("t2v", "garbage") == (facade.form("t2v", opening), [])
