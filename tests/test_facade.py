"""The rules that moved out of the UI into core.facade: cache encodings, resolution text, the overlap
default, the forms per model, the downloads, the estimate's worker; and ui/ reaching the core only
through the facade."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.continuation import ContinueRequest
from core.facade import Facade, ModelDownloads
from core.facade.encode import chunk_cache, overlap_frames, resolution_size, step_cache
from core.parallel.dispatch import WorkerStatus
from core.settings import Settings
from core.studio import Studio
from core.validation import ConfigError
from weights.registry import get_card

pytest_plugins = ["tests.conftest_continue"]
UI = Path(__file__).resolve().parent.parent / "ui"


def facade_for(tmp_path: Path, dispatcher: object = None) -> Facade:
    settings = Settings(outputs_dir=tmp_path, models_dir=tmp_path / "models", offline=True, dev=True)
    return Facade(SimpleNamespace(settings=settings, dispatcher=dispatcher))


def test_ui_imports_the_core_only_through_the_facade() -> None:
    found = []
    for path in sorted(UI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [(path.name, n) for n in names if n.split(".")[0] in ("core", "weights", "kernels")]
    assert found and all(name == "core.facade" for _, name in found), found


def test_the_step_cache_encoding() -> None:
    assert step_cache("Off", "auto", None) is None
    assert step_cache("Faster", "auto", None) == {"preset": "faster"}
    assert step_cache("Fast", "mag", None) == {"method": "mag", "preset": "fast"}
    assert step_cache("Off", "first_block", None) == {"method": "first_block", "preset": "fast"}
    assert step_cache("Off", "teacache", 0.1) == {"method": "teacache", "threshold": 0.1}
    assert step_cache("Fast", "auto", 0.3) == {"method": "teacache", "threshold": 0.3}  # the presets' method


def test_the_chunk_cache_encoding() -> None:
    assert chunk_cache("Off") is None and chunk_cache(None, 0) is None
    assert chunk_cache("Fast") == {"preset": "fast"}
    assert chunk_cache("Off", 0.2) == chunk_cache("Faster", 0.2) == {"method": "flowcache", "threshold": 0.2}


def test_resolution_text_is_a_preset_or_width_x_height() -> None:
    card = get_card("tiny-wan")
    preset = card.resolutions[0]
    assert resolution_size(card, preset.name) == (preset.width, preset.height)
    assert resolution_size(card, "64 × 48") == (64, 48)
    for bad in ("64x48px", "-64x48", None):
        with pytest.raises(ConfigError, match="give WIDTHxHEIGHT"):
            resolution_size(card, bad)


def test_the_overlap_default_is_the_requests_whole_blocks(clip_with_audio: Path) -> None:
    card = get_card("tiny-skyreels-df")
    assert overlap_frames(card, 13) == 13
    for ar_step, block in ((0, 0), (0, 2)):
        request = ContinueRequest(
            model=card.id, video=str(clip_with_audio), prompt="x", ar_step=ar_step, causal_block_size=block
        )
        assert overlap_frames(card, 0, ar_step, block) == request.overlap_history


def test_forms_follow_the_models_card(tmp_path: Path) -> None:
    facade = facade_for(tmp_path)
    magi, wan = facade.form("t2v", "tiny-magi"), facade.form("t2v", "tiny-wan")
    assert magi["magi_options"]["visible"] and not magi["frame_count"]["visible"]
    assert not wan["magi_options"]["visible"] and wan["frame_count"]["maximum"] == 33
    assert wan["step_count"]["value"] == get_card("tiny-wan").defaults.steps
    assert facade.form("continue", "tiny-magi")["forcing"] == {"visible": False}
    inputs = facade.inputs("continue")
    assert inputs["overlap_frames"]["info"].startswith("Frames of the clip's end")
    assert inputs["model_id"]["value"] == inputs["model_id"]["choices"][0][1]
    assert facade.inputs("t2v")["multi_gpu"]["visible"] is False
    assert facade_for(tmp_path, object()).inputs("t2v")["multi_gpu"]["visible"] is True
    esrgan = facade.form("upscale", "realesrgan-x2plus")
    assert esrgan["scale_value"]["choices"] == ["2"] and esrgan["variant_value"] == {"visible": False}


def test_the_estimate_plans_on_an_idle_worker(tmp_path: Path) -> None:
    planned = []

    class Planner:
        def __init__(self, name: str) -> None:
            self.name = name

        def plan(self, *args, **kwargs):
            planned.append(self.name)
            raise ConfigError("stop here")

    workers = [WorkerStatus("GPU 0", "cuda:0", "running", "job-1"), WorkerStatus("GPU 1", "cuda:1", "idle")]
    dispatcher = SimpleNamespace(status=lambda: workers)
    studio = SimpleNamespace(
        settings=Settings(outputs_dir=tmp_path, dev=True),
        dispatcher=dispatcher,
        runners=[SimpleNamespace(models=Planner("gpu0")), SimpleNamespace(models=Planner("gpu1"))],
    )
    studio.planning_runner = lambda: Studio.planning_runner(studio)
    values = {"model_id": "tiny-wan", "resolution_label": "64x64", "frame_count": 9, "level": "auto"}
    assert Facade(studio).estimate("t2v", values) == "⚠️ stop here"
    workers[1] = WorkerStatus("GPU 1", "cuda:1", "running", "job-2")
    Facade(studio).estimate("t2v", values)
    assert planned == ["gpu1", "gpu0"]


def test_downloads_refuse_a_second_start_and_report_cancel(tmp_path: Path, monkeypatch) -> None:
    downloads = ModelDownloads(Settings(outputs_dir=tmp_path, models_dir=tmp_path, offline=True), dev=True)
    started = []

    def fake_ensure(card, settings, on_progress, should_cancel):
        started.append(card.id)
        with pytest.raises(ConfigError, match="already downloading"):
            downloads.download(card.id, on_progress)
        assert downloads.cancel(card.id) == "Cancelling…" and should_cancel()
        from core.jobs import JobCancelledError

        raise JobCancelledError("stopped")

    monkeypatch.setattr("core.facade.downloads.ensure_model", fake_ensure)
    message = downloads.download("tiny-wan", lambda p: None)
    assert started == ["tiny-wan"] and "cancelled. Download again to resume" in message
    assert downloads.cancel("tiny-wan") == "tiny-wan is not downloading."
    assert "Where" in downloads.headers and downloads.can_delete
    space = ModelDownloads(downloads.settings, dev=True, in_space=True)
    assert "Where" not in space.headers and not space.can_delete
    assert all(len(row) == 6 for row in space.rows())
