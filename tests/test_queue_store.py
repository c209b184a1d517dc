"""The queue kept on disk: jobs queued when the app stopped run after a restart, a job it was running is
listed as interrupted, a closed page never cancels its job, and a queue saved to a file loads again (or runs
headless through the batch command line)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.batch import main as batch_main
from core.jobs import JobStatus
from core.queue_store import INTERRUPTED, QUEUE_FILE, QueueStore
from core.settings import Settings
from core.studio import Studio
from core.validation import ConfigError
from core.video_io import probe_video
from tests.conftest import LaunchedApp

SLOW = {"task": "t2v", "model": "tiny-wan", "prompt": "a slow red car", "steps": 40, "frames": 33, "seed": 3}


def wait_until(check, timeout: float = 120.0, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(poll)


def test_the_store_keeps_unfinished_jobs_and_marks_running_ones_interrupted(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "queue.json")
    store.add("job-1", {"task": "t2v", "prompt": "a"})
    store.add("job-2", {"task": "t2v", "prompt": "b"})
    store.add("job-3", {"task": "t2v", "prompt": "c"})
    store.started("job-1")
    store.started("job-2")
    store.finished("job-2")
    loaded = {job.id: job for job in QueueStore(tmp_path / "queue.json").load()}
    assert set(loaded) == {"job-1", "job-3"}
    assert (loaded["job-1"].status, loaded["job-1"].note) == ("interrupted", INTERRUPTED)
    assert loaded["job-3"].status == "queued" and loaded["job-3"].request["prompt"] == "c"
    (tmp_path / "queue.json").write_text("{not json")
    assert QueueStore(tmp_path / "queue.json").load() == []
    assert (tmp_path / "queue.json.broken").is_file()


def test_a_restarted_studio_runs_what_was_queued_and_lists_what_was_running(settings: Settings) -> None:
    settings = replace(settings, keep_queue=True)
    store = QueueStore(settings.outputs_dir / QUEUE_FILE)
    quick = SLOW | {"steps": 2, "frames": 5}
    # ids as an earlier run gave them: this run's first job takes "job-1" again
    store.add("job-1", quick | {"prompt": "was running"})
    store.started("job-1")
    store.add("job-2", quick | {"prompt": "was waiting"})
    store.add("job-3", {"task": "upscale", "model": "tiny-esrgan", "video": "/gone/clip.mp4"})
    studio = Studio(settings)
    try:
        (job,) = studio.queue.jobs()
        wait_until(lambda: job.finished)
        assert job.status == JobStatus.DONE and job.request.prompt == "was waiting"
        assert probe_video(Path(job.result["path"])).frames == 5
        interrupted = {stored.request.get("prompt"): stored.note for stored in studio.store.interrupted()}
        assert interrupted["was running"] == INTERRUPTED
        assert interrupted[None].startswith("not queued again: video '/gone/clip.mp4' does not exist")
    finally:
        studio.shutdown()
    again = Studio(settings)  # the finished job left the file; the interrupted ones stay until cleared
    try:
        assert again.queue.jobs() == [] and len(again.store.interrupted()) == 2
        again.store.clear_interrupted()
        assert again.store.interrupted() == []
    finally:
        again.shutdown()


def test_a_queue_saved_to_a_file_loads_again_and_bad_files_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    studio = Studio(settings)
    try:
        first = studio.submit(SLOW)
        waiting = [studio.submit(SLOW | {"prompt": f"waiting {n}", "steps": 2}) for n in range(2)]
        wait_until(lambda: first.status != JobStatus.QUEUED)
        saved = tmp_path / "saved.json"
        assert studio.save_queue(saved) == 2
        rows = json.loads(saved.read_text())
        assert [row["prompt"] for row in rows] == ["waiting 0", "waiting 1"]
        for job in [first, *waiting]:
            studio.cancel(job.id)
        loaded = studio.load_queue(saved)
        assert [job.request.prompt for job in loaded] == ["waiting 0", "waiting 1"]
        wait_until(lambda: all(job.finished for job in loaded))
        assert all(job.status == JobStatus.DONE for job in loaded)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([{"task": "t2v", "model": "tiny-wan", "prompt": ""}]))
        with pytest.raises(ConfigError, match="saved job 1: prompt"):
            studio.load_queue(bad)
        bad.write_text("nonsense")
        with pytest.raises(ConfigError, match="a saved queue is a JSON list of requests"):
            studio.load_queue(bad)
    finally:
        studio.shutdown()
    headless = tmp_path / "headless"
    batch_main([str(saved), "--outputs", str(headless), "--models-dir", str(settings.models_dir), "--dev"])
    assert sorted(p.name[:8] for p in headless.rglob("row-*.mp4")) == ["row-0001", "row-0002"]


@pytest.mark.e2e
def test_kill_and_restart_mid_queue_runs_the_waiting_jobs(models_dir: Path, tmp_path: Path) -> None:
    """Through the real server: three jobs, the app killed while the first runs, then started again."""
    from gradio_client import Client

    outputs = tmp_path / "outputs"
    args = ["--dev", "--offline", "--models-dir", str(models_dir), "--outputs", str(outputs)]
    app = LaunchedApp(args, tmp_path / "first.log")
    app.wait_ready()
    client = Client(app.url, verbose=False)
    store = outputs / QUEUE_FILE

    def stored() -> str:
        return store.read_text() if store.is_file() else ""

    for prompt, steps in (("first slow", 200), ("second", 2), ("third", 2)):
        client.submit("tiny-wan", prompt, "", "small portrait (48x64)", 9, steps, 4.0, 0, 5, api_name="/t2v")
        wait_until(lambda prompt=prompt: prompt in stored())
    wait_until(lambda: '"running"' in stored())
    app.process.send_signal(signal.SIGKILL)
    app.process.wait()
    client.close()

    again = LaunchedApp(args, tmp_path / "second.log")
    try:
        again.wait_ready()
        wait_until(lambda: len(list(outputs.glob("*.json"))) == 2, timeout=180)  # sidecars come last
        records = [json.loads(p.read_text()) for p in outputs.glob("*.json")]
        assert sorted(record["request"]["prompt"] for record in records) == ["second", "third"]
        wait_until(lambda: store.read_text().count('"id"') == 1)
        (kept,) = json.loads(store.read_text())
        assert kept["request"]["prompt"] == "first slow" and kept["status"] == "interrupted"
    finally:
        again.stop()


@pytest.mark.e2e
def test_a_client_that_goes_away_does_not_cancel_its_job(launched_app, tmp_path: Path) -> None:
    """A client process killed while its job runs: the job finishes and its video lands in the outputs."""
    script = (
        "from gradio_client import Client\n"
        f"client = Client({launched_app.url!r}, verbose=False)\n"
        "client.predict('tiny-wan', 'left alone', '', 'small portrait (48x64)', 9, 60, 4.0, 0, 9,\n"
        "               api_name='/t2v')\n"
    )
    outputs = Path(launched_app.outputs)
    before = set(outputs.glob("*.json"))
    client = subprocess.Popen([sys.executable, "-c", script])
    store = outputs / QUEUE_FILE
    wait_until(lambda: store.is_file() and "left alone" in store.read_text())
    time.sleep(1.0)
    client.kill()
    client.wait()

    def made() -> list[Path]:
        return [p.with_suffix(".mp4") for p in set(outputs.glob("*.json")) - before if "left-alone" in p.name]

    wait_until(lambda: bool(made()), timeout=180)
    assert probe_video(made()[0]).frames == 9
