"""The launched app: a dropped mp4 (or its sidecar) made by the app gives back the form values that make
its request again; the page keeps each tab's settings in the browser (localStorage)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from core.video_io import probe_video, read_record

pytestmark = pytest.mark.e2e


def test_a_dropped_video_restores_the_settings_that_made_it(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    video, _, _ = client.predict(
        "tiny-wan", "a red kite", "blurry", "small portrait (48x64)", 13, 2, 4.0, 0, 321, api_name="/t2v"
    )
    form = client.predict(handle_file(video), api_name="/rerun_form")
    assert form["tab"] == "t2v" and form["notes"] == []
    values = form["values"]
    assert values["seed_value"] == 321 and values["frame_count"] == 13
    assert values["resolution_label"] == "small portrait (48x64)" and values["prompt_text"] == "a red kite"
    again, details_again, _ = client.predict(**values, api_name="/t2v")
    first, second = probe_video(Path(video)), probe_video(Path(again))
    assert (
        (second.frames, second.width, second.height)
        == (first.frames, first.width, first.height)
        == (13, 48, 64)
    )
    assert details_again["seed"] == 321
    assert read_record(Path(again))["request"] == read_record(Path(video))["request"]
    sidecar = next(launched_app.outputs.rglob(f"{Path(video).stem}.json"))
    assert client.predict(handle_file(str(sidecar)), api_name="/rerun_form")["values"] == values


def test_the_page_keeps_each_tabs_settings_in_the_browser(launched_app) -> None:
    with urllib.request.urlopen(launched_app.url + "config", timeout=30) as response:
        config = json.load(response)
    stores = [c for c in config["components"] if c.get("type") == "browserstate"]
    assert len(stores) == 1
    props = stores[0]["props"]
    assert (
        props["storage_key"] == "video-studio-settings" and props["secret"]
    )  # fixed: readable after restarts
    loads = [d for d in config["dependencies"] if any(t[1] == "load" for t in d.get("targets", []))]
    assert any(stores[0]["id"] in d["inputs"] for d in loads)
