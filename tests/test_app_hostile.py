"""Hostile input against the launched app (issue 34): batch rows naming server files, long paths and ids,
raw REST calls missing inputs, output file modes, the warning of an open app, failed logins throttled."""

from __future__ import annotations

import json
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LaunchedApp
from gradio_client import Client, handle_file
from test_compare_stream import audio_only
from test_continue_input import phone_clip

from core.batch_files import refusal
from tests.conftest_upscale import make_clip

pytestmark = pytest.mark.e2e


def launch(args: list[str], models_dir: Path, folder: Path) -> LaunchedApp:
    app = LaunchedApp(
        ["--dev", "--offline", "--models-dir", str(models_dir), "--outputs", str(folder / "outputs"), *args],
        folder / "app.log",
    )
    app.wait_ready()
    return app


@pytest.fixture(scope="module")
def open_app(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    """Listening on every interface, without --auth."""
    app = launch(["--host", "0.0.0.0"], models_dir, tmp_path_factory.mktemp("open"))
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def protected_app(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    app = launch(["--auth", "ann:secret"], models_dir, tmp_path_factory.mktemp("protected"))
    try:
        yield app
    finally:
        app.stop()


def error_of(call) -> str:
    with pytest.raises(Exception) as failed:  # gradio_client raises AppError
        call()
    return str(failed.value)


def test_an_open_app_warns_in_its_log_and_on_its_page(open_app: LaunchedApp) -> None:
    assert "WARNING: listening beyond this machine without --auth" in open_app.log.read_text()
    with urllib.request.urlopen(f"{open_app.url}config", timeout=10) as response:
        config = response.read().decode()
    assert "listening beyond this machine without --auth" in config


def test_batch_rows_cannot_name_server_files(open_app: LaunchedApp, tmp_path: Path) -> None:
    secret = make_clip(tmp_path / "secret.mp4", frames=5, width=64, height=64, audio=False)
    rows = [
        {"task": "upscale", "model": "tiny-flashvsr", "video": str(secret)},
        {"task": "upscale", "model": "tiny-flashvsr", "video": str(tmp_path / "missing.mp4")},
        {"task": "upscale", "model": "tiny-flashvsr", "video": "../../../etc/passwd"},
    ]
    prompts = tmp_path / "rows.json"
    prompts.write_text(json.dumps(rows), encoding="utf-8")
    client = Client(open_app.url, verbose=False)
    table, _ = client.predict(handle_file(str(prompts)), "tiny-wan", api_name="/batch")
    assert [row[2] for row in table["data"]] == ["bad", "bad", "bad"]
    assert {row[-1] for row in table["data"]} == {refusal("video")}


def test_long_paths_and_ids_get_short_clear_errors(open_app: LaunchedApp) -> None:
    client = Client(open_app.url, verbose=False)
    message = error_of(lambda: client.predict("a" * 5000, api_name="/rerun_settings"))
    assert "not a result" in message and "OSError" not in message and len(message) < 300
    message = error_of(lambda: client.predict("j" * 10000, api_name="/cancel_job"))
    assert "no job of 10000 characters" in message and "jjjj" not in message


def test_a_raw_rest_call_missing_inputs_names_them(open_app: LaunchedApp) -> None:
    url = f"{open_app.url}gradio_api/call/t2v"
    request = urllib.request.Request(
        url, data=b'{"data": []}', headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}/{event}", timeout=60) as response:
        body = response.read().decode()
    assert "missing input(s): " in body and "(got 0 of " in body
    assert " at 0x" not in body and "object" not in body


def test_outputs_are_not_executable(open_app: LaunchedApp) -> None:
    client = Client(open_app.url, verbose=False)
    _, _, status = client.predict(prompt_text="a cat", step_count=1, api_name="/t2v")
    assert status.startswith("Done")
    outputs = open_app.log.parent / "outputs"
    made = [p for p in outputs.rglob("*") if p.is_file()]
    assert made and all(stat.S_IMODE(p.stat().st_mode) & 0o111 == 0 for p in made)


def login(app: LaunchedApp, password: str) -> int:
    data = urllib.parse.urlencode({"username": "ann", "password": password}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{app.url}login", data=data), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_failed_logins_are_throttled(protected_app: LaunchedApp) -> None:
    codes = [login(protected_app, "wrong") for _ in range(30)]
    assert codes[0] == 400 and codes.count(400) <= 2 and codes.count(429) >= 28
    assert login(protected_app, "secret") == 429  # the right password waits its turn too
    time.sleep(1.2)  # two failures: the wait is 1 s
    assert login(protected_app, "secret") == 200
    assert login(protected_app, "wrong") == 400  # a success clears the count: no wait before this


def test_compare_reads_upright_and_refuses_audio_only_files(open_app: LaunchedApp, tmp_path: Path) -> None:
    client = Client(open_app.url, verbose=False)
    stored = handle_file(str(phone_clip(tmp_path / "stored.mp4", 0)))
    portrait = handle_file(str(phone_clip(tmp_path / "portrait.mp4", 90)))
    _, means, _ = client.predict(stored, portrait, api_name="/compare")
    assert means["psnr_db"] < 20 and any("sizes differ (80x60 vs 60x80)" in n for n in means["notes"])
    song = handle_file(str(audio_only(tmp_path / "song.mp4")))
    message = error_of(lambda: client.predict(stored, song, api_name="/compare"))
    assert "song.mp4 has no video track" in message
    assert "IndexError" not in message and str(tmp_path) not in message and "/tmp" not in message


def test_text_to_video_sizes_beyond_the_model_are_refused_before_the_job(open_app: LaunchedApp) -> None:
    client = Client(open_app.url, verbose=False)
    for width, height in ((768, 768), (1024, 1024), (576, 1024)):
        message = error_of(
            lambda w=width, h=height: client.predict(
                prompt_text="a cat", resolution_label=f"{w}x{h}", step_count=1, api_name="/t2v"
            )
        )
        assert "between 16 and 512" in message and "shape" not in message
    _, details, _ = client.predict(
        prompt_text="a cat", resolution_label="512x512", frame_count=5, step_count=1, api_name="/t2v"
    )
    assert (details["width"], details["height"]) == (512, 512)
