"""Hugging Face Space mode: detected from the Space's variables; on ZeroGPU jobs run inside spaces.GPU."""

from __future__ import annotations

import contextvars
import sys
import types
from pathlib import Path

import gradio as gr
import pytest

from core.facade import Facade
from core.jobs import JobQueue, JobStatus
from core.settings import Settings
from core.space import (
    MAX_SECONDS,
    MIN_SECONDS,
    detect_space,
    estimate_gpu_seconds,
    for_display,
    on_zero_gpu,
)
from core.studio import Studio
from core.tasks import parse_request
from ui.app import build_app
from ui.history_tab import history_frame


def system_summary(studio: Studio) -> str:
    return Facade(studio).system_summary()


class FakeSpaces(types.ModuleType):
    """A stand-in for the ``spaces`` package: records each decorated call and the duration it asked for."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.durations: list[int] = []

    def GPU(self, duration):  # the real package's name
        def decorate(fn):
            def wrapper(*args):
                self.durations.append(duration(*args))
                return fn(*args)

            return wrapper

        return decorate


def test_space_variables_are_detected() -> None:
    assert not detect_space({}).is_space
    space = detect_space({"SPACE_ID": "someone/video-studio", "SPACES_ZERO_GPU": "true"})
    assert space.is_space and space.zero_gpu and space.space_id == "someone/video-studio"
    assert not detect_space({"SPACE_ID": "someone/video-studio"}).zero_gpu


def test_gpu_seconds_grow_with_the_work_and_stay_within_bounds() -> None:
    small = estimate_gpu_seconds(parse_request({"model": "wan2.1-t2v-1.3b", "prompt": "x", "steps": 10}))
    full = estimate_gpu_seconds(parse_request({"model": "wan2.1-t2v-1.3b", "prompt": "x"}))
    big = estimate_gpu_seconds(parse_request({"model": "wan2.1-t2v-14b", "prompt": "x"}))
    assert MIN_SECONDS <= small < full < big <= MAX_SECONDS
    assert 90 <= full <= 150  # 50 steps of ~1.3 s plus loading, with a 1.5x margin


def test_a_long_video_asks_for_the_sum_of_its_parts_within_the_cap() -> None:
    t2v = {"model": "wan2.1-t2v-1.3b", "prompt": "x", "steps": 10}
    chain = parse_request({"task": "chain", "t2v": t2v, "continuations": 1})
    first, continuation = chain.planned_parts()
    assert estimate_gpu_seconds(chain) == estimate_gpu_seconds(first) + estimate_gpu_seconds(continuation)
    longest = parse_request({"task": "chain", "t2v": t2v, "continuations": 20})
    assert estimate_gpu_seconds(longest) == MAX_SECONDS


def test_zero_gpu_runs_each_job_inside_spaces_gpu_in_the_submitters_context(monkeypatch) -> None:
    spaces = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    user = contextvars.ContextVar("user", default=None)
    seen: list[str | None] = []
    execute = on_zero_gpu(
        lambda job: seen.append(user.get()) or {"ok": True},
        detect_space({"SPACE_ID": "a/b", "SPACES_ZERO_GPU": "1"}),
    )
    queue = JobQueue([execute])
    user.set("ann")
    job = queue.submit(parse_request({"model": "tiny-wan", "prompt": "a cat"}))
    version = -1
    while not job.finished:
        version = job.wait_for_change(version, 1.0)
    queue.shutdown()
    assert job.status == JobStatus.DONE
    assert seen == ["ann"]  # the worker thread ran the job in the context it was submitted from
    assert spaces.durations == [estimate_gpu_seconds(job.request)]


def test_without_zero_gpu_the_executor_is_unchanged() -> None:
    def execute(job):
        return {}

    assert on_zero_gpu(execute, detect_space({"SPACE_ID": "a/b"})) is execute


def test_space_mode_hides_local_paths(monkeypatch, models_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("SPACE_ID", "someone/video-studio")
    studio = Studio(Settings(outputs_dir=tmp_path / "secret-outputs", models_dir=models_dir, offline=True))
    try:
        assert studio.space.is_space
        assert "secret-outputs" not in system_summary(studio)
        demo = build_app(studio)
        texts = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
        assert not any("secret-outputs" in str(text) for text in texts)
        model = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model")
        assert model.value == "wan2.1-t2v-1.3b"  # the Space's default model
    finally:
        studio.shutdown()


def shown_texts(demo: gr.Blocks) -> list[str]:
    """Every value the layout shows: Markdown, table cells and headers, JSON, text boxes, dropdowns."""
    kinds = (gr.Markdown, gr.Dataframe, gr.JSON, gr.Textbox, gr.Dropdown)
    return [str(b.value) for b in demo.blocks.values() if isinstance(b, kinds)]


def api_names(demo: gr.Blocks) -> set[str]:
    return {str(fn.api_name) for fn in demo.fns.values()}


def models_table(demo: gr.Blocks) -> dict:
    return next(b.value for b in demo.blocks.values() if getattr(b, "label", "") == "Models on this machine")


@pytest.mark.parametrize("in_space", [False, True])
def test_models_and_history_offer_delete_only_outside_a_space(
    monkeypatch, in_space: bool, models_dir: Path, tmp_path: Path
) -> None:
    if in_space:
        monkeypatch.setenv("SPACE_ID", "someone/video-studio")
    else:
        monkeypatch.delenv("SPACE_ID", raising=False)
    settings = Settings(outputs_dir=tmp_path / "outputs", models_dir=models_dir, offline=True, dev=True)
    studio = Studio(settings)
    try:
        demo = build_app(studio)
        table = models_table(demo)
        tiny = next(row for row in table["data"] if row[1] == "tiny-wan")
        assert tiny[2] == "ready" and tiny[3] != "-"  # state and size shown either way
        shows_folder = any(str(models_dir) in text for text in shown_texts(demo))
        assert shows_folder is not in_space
        assert ("Where" in table["headers"]) is not in_space
        assert ("delete_model" in api_names(demo)) is not in_space
        assert ("delete_result" in api_names(demo)) is not in_space  # History's Delete
        assert "download_model" in api_names(demo)
    finally:
        studio.shutdown()


def test_details_and_messages_lose_server_paths_in_a_space(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    details = {"job_folder": str(outputs / "chains" / "job1"), "parts": [{"output": "a.mp4"}], "frames": 9}
    message = f"Cancelled during denoise. Partial result kept: {outputs / 'x_partial.mp4'}"
    space, local = detect_space({"SPACE_ID": "a/b"}), detect_space({})
    shown, text = for_display((details, message), space, outputs)
    assert shown == {"job_folder": "chains/job1", "parts": [{"output": "a.mp4"}], "frames": 9}
    assert text == "Cancelled during denoise. Partial result kept: x_partial.mp4"
    assert for_display("/etc/passwd", space, outputs) == "passwd"
    assert for_display(str(outputs), space, outputs) == "."
    assert for_display((details, message), local, outputs) == (details, message)


def test_history_lists_results_inside_the_outputs_folder_in_a_space(
    monkeypatch, models_dir: Path, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    (outputs / "chains").mkdir(parents=True)
    (outputs / "chains" / "long.mp4").write_bytes(b"")
    (outputs / "chains" / "long.json").write_text('{"task": "t2v", "request": {"prompt": "/a cat"}}')
    monkeypatch.setenv("SPACE_ID", "someone/video-studio")
    studio = Studio(Settings(outputs_dir=outputs, models_dir=models_dir, offline=True))
    try:
        frame = history_frame(Facade(studio), "", "", "")
        assert frame["path"].tolist() == ["chains/long.mp4"]
        assert frame["prompt"].tolist() == ["/a cat"]  # only the path column is rewritten
    finally:
        studio.shutdown()


@pytest.mark.parametrize("flag", ["true", "1"])
def test_zero_gpu_studio_plans_for_cuda(monkeypatch, flag: str, models_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "spaces", FakeSpaces())
    monkeypatch.setenv("SPACE_ID", "someone/video-studio")
    monkeypatch.setenv("SPACES_ZERO_GPU", flag)
    studio = Studio(Settings(outputs_dir=tmp_path, models_dir=models_dir, offline=True))
    try:
        assert [str(r.device) for r in studio.runners] == ["cuda:0"]
        assert "ZeroGPU" in system_summary(studio)
    finally:
        studio.shutdown()
