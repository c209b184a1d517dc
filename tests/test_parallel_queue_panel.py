"""The queue view's data: workers with their jobs, and the waiting jobs, from the Studio."""

from __future__ import annotations

import threading

import gradio as gr

from core.facade import Facade
from core.jobs import Job
from core.settings import Settings
from core.studio import Studio
from ui.queue_panel import build_queue_panel


def test_rows_show_the_running_job_its_tab_and_the_waiting_ones(settings: Settings, monkeypatch) -> None:
    started, release = threading.Event(), threading.Event()

    def held(job: Job) -> dict:
        job.report("denoising", 1, 4)
        started.set()
        release.wait(10)
        return {"status": "done"}

    monkeypatch.setattr("core.studio.on_zero_gpu", lambda execute, space: held)
    studio = Studio(settings)
    facade = Facade(studio)
    worker_rows, queued_rows = facade.worker_rows, facade.queued_rows
    try:
        assert worker_rows() == [["CPU", "cpu", "", "", "idle"]]
        running = studio.submit({"model": "tiny-wan", "prompt": "a cat"})
        waiting = studio.submit({"model": "tiny-wan", "prompt": "a dog"})
        assert started.wait(10)
        [row] = worker_rows()
        assert row[:4] == ["CPU", "cpu", running.id, "Text to video"] and row[4].startswith("denoising 1/4")
        assert queued_rows(now=waiting.created_at + 3) == [["1", waiting.id, "Text to video", "3 s"]]
        with gr.Blocks():
            panel = build_queue_panel(facade, every=5)
        choice = facade.inputs("t2v")["multi_gpu"]
        assert panel.timer.value == 5 and panel.workers.headers[:3] == ["Worker", "Device", "Job"]
        assert choice["visible"] is False, "one device: nothing to choose"
    finally:
        release.set()
        studio.shutdown()
