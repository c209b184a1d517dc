"""History rows of long videos, upscales and partial results, from their sidecar records (no model runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.history import list_results, rerun_settings

CHAIN_REQUEST = {
    "task": "chain",
    "t2v": {"model": "wan2.1-t2v-1.3b", "prompt": "a boat at dawn", "seed": 4},
    "continuations": 2,
    "continue_model": "skyreels-v2-df-1.3b",
    "continue_prompt": "a boat at dawn",
    "seconds": 5.0,
    "upscale_model": "flashvsr-v1.1",
    "upscale_scale": 4,
}


def save(folder: Path, name: str, record: dict[str, Any], unix_time: float) -> Path:
    """An mp4 (empty: history reads only the sidecar) with its record."""
    video = folder / f"{name}.mp4"
    video.write_bytes(b"")
    video.with_suffix(".json").write_text(json.dumps(record | {"unix_time": unix_time}), encoding="utf-8")
    return video


def upscale_record(source: str, **fields: Any) -> dict[str, Any]:
    request = {"task": "upscale", "model": "flashvsr-v1.1", "video": source, "scale": 4, "seed": 1}
    return (
        {"task": "upscale", "model": "flashvsr-v1.1", "request": request, "scale": 4}
        | {"input": Path(source).name}
        | fields
    )


def test_a_long_video_shows_and_filters_by_its_models_and_prompt(tmp_path: Path) -> None:
    parts = [
        {"task": "t2v", "model": "wan2.1-t2v-1.3b"},
        {"task": "continue", "model": "skyreels-v2-df-1.3b"},
        {"task": "continue", "model": "skyreels-v2-df-1.3b"},
        {"task": "upscale", "model": "flashvsr-v1.1"},
    ]
    save(tmp_path, "chain_boat", {"task": "chain", "request": CHAIN_REQUEST, "parts": parts}, 2)
    older = {"task": "chain", "request": CHAIN_REQUEST | {"upscale_model": None}}  # no parts listed
    save(tmp_path, "chain_old", older, 1)

    new, old = list_results(tmp_path, task="chain")
    assert new.prompt == old.prompt == "a boat at dawn"
    assert new.model == "wan2.1-t2v-1.3b → skyreels-v2-df-1.3b → flashvsr-v1.1"
    assert old.model == "wan2.1-t2v-1.3b → skyreels-v2-df-1.3b"
    assert new.row()["model"] == new.model and new.row()["prompt"] == "a boat at dawn"
    for model in ("wan2.1-t2v-1.3b", "skyreels-v2-df-1.3b", new.model):  # each model of it finds it
        assert new in list_results(tmp_path, model=model)
    assert list_results(tmp_path, model="flashvsr-v1.1") == [new]
    assert list_results(tmp_path, model="wan") == []  # still exact, not a substring
    assert len(list_results(tmp_path, text="BOAT")) == 2


def test_an_upscale_shows_its_file_name_not_the_upload_path(tmp_path: Path) -> None:
    save(tmp_path, "upscale_file", upscale_record("/tmp/gradio/0a1b2c/file.mp4", status="done"), 1)
    (entry,) = list_results(tmp_path)
    assert entry.prompt == entry.row()["prompt"] == "upscale x4 of file.mp4" and not entry.partial
    assert list_results(tmp_path, text="of file.mp4") == [entry]
    assert list_results(tmp_path, text="gradio") == list_results(tmp_path, text="0a1b2c") == []
    assert list_results(tmp_path, model="flashvsr-v1.1") == [entry]


def test_a_partial_upscale_says_so_with_the_frames_it_holds(tmp_path: Path) -> None:
    partial = {
        "status": "cancelled",
        "partial": True,
        "frames": 85,
        "frames_written": 85,
        "source_frames": 240,
    }
    save(tmp_path, "upscale_file_partial", upscale_record("/tmp/x/file.mp4", **partial), 2)
    # a record written before ``partial`` existed: ``frames`` was the input's count
    older = {"status": "failed", "frames": 240, "frames_written": 85}
    save(tmp_path, "upscale_old_partial", upscale_record("/tmp/x/old.mp4", **older), 1)
    new, old = list_results(tmp_path, task="upscale")
    assert new.partial and new.prompt == "upscale x4 of file.mp4 (partial: cancelled, 85 of 240 frames)"
    assert old.partial and old.prompt == "upscale x4 of old.mp4 (partial: failed, 85 of 240 frames)"
    assert list_results(tmp_path, text="(partial") == [new, old]


def test_rerun_of_an_upscale_whose_upload_is_gone_asks_for_the_file(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    source = tmp_path / "kept.mp4"
    source.write_bytes(b"")
    gone = save(outputs, "upscale_gone", upscale_record("/tmp/gradio/0a1b2c/file.mp4"), 2)
    kept = save(outputs, "upscale_kept", upscale_record(str(source)), 1)

    notes: list[str] = []
    settings = rerun_settings(outputs, gone, notes)
    assert settings["video"] is None and settings["scale"] == 4 and settings["model"] == "flashvsr-v1.1"
    assert len(notes) == 1 and "file.mp4 is no longer there" in notes[0] and "pick the file again" in notes[0]
    assert rerun_settings(outputs, gone)["video"] is None  # notes are optional

    notes.clear()
    assert rerun_settings(outputs, kept, notes)["video"] == str(source) and notes == []
