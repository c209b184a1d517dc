"""The Compare, Batch and History tabs in one Blocks app, launched in-process and driven by gradio_client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file

from core.facade import Facade
from core.metrics import MAX_PSNR
from core.studio import Studio
from ui.batch_tab import build_batch_tab
from ui.compare_tab import build_compare_tab
from ui.history_tab import build_history_tab

pytest_plugins = ["tests.conftest_workflow"]
pytestmark = pytest.mark.e2e


@pytest.fixture
def client(studio: Studio) -> Iterator[Client]:
    facade = Facade(studio)
    with gr.Blocks() as demo:
        with gr.Tab("Compare"):
            build_compare_tab(facade)
        with gr.Tab("Batch"):
            build_batch_tab(facade)
        with gr.Tab("History"):
            build_history_tab(facade)
    outputs = str(studio.settings.outputs_dir)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[outputs])
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_batch_then_history_then_compare_then_delete(client: Client, studio: Studio, tmp_path: Path) -> None:
    prompts = tmp_path / "two.json"
    rows = [{"prompt": "a lake", "seed": 1}, {"prompt": "a lake", "seed": 1, "steps": 2}, {"prompt": ""}]
    prompts.write_text(json.dumps(rows), encoding="utf-8")
    table, status = client.predict(handle_file(str(prompts)), "tiny-wan", api_name="/batch")
    statuses = [row[2] for row in table["data"]]
    assert statuses == ["done", "done", "bad"] and "3 rows" in status

    history = client.predict("", "tiny-wan", "LAKE", api_name="/history")
    paths = [row[-1] for row in history["data"]]
    assert len(paths) == 2 and all(Path(p).parent.name.startswith("two-") for p in paths)
    settings = client.predict(paths[0], api_name="/rerun_settings")
    assert settings["prompt"] == "a lake" and settings["seed"] == 1 and settings["task"] == "t2v"

    _, means, _ = client.predict(handle_file(paths[0]), handle_file(paths[0]), api_name="/compare")
    assert means["psnr_db"] == MAX_PSNR and means["ssim"] == pytest.approx(1.0)
    assert any(note.startswith("LPIPS unavailable") for note in means["notes"])
    _, means, _ = client.predict(handle_file(paths[0]), handle_file(paths[1]), api_name="/compare")
    assert means["psnr_db"] < MAX_PSNR  # 1 step against 2 steps from the same seed

    table, _, _, message = client.predict(paths[0], "", "", "", api_name="/delete_result")
    assert "Deleted" in message and not Path(paths[0]).exists()
    assert [row[-1] for row in table["data"]] == [paths[1]]
