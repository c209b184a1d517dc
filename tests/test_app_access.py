"""Who may use a launched app and what it serves: --auth protects UI and API; only outputs are served."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LaunchedApp
from gradio_client import Client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def protected_app(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    folder = tmp_path_factory.mktemp("protected")
    app = LaunchedApp(
        [
            "--dev",
            "--offline",
            "--auth",
            "ann:secret",
            "--models-dir",
            str(models_dir),
            "--outputs",
            str(folder / "outputs"),
        ],
        folder / "app.log",
    )
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def test_auth_blocks_an_anonymous_client_and_admits_a_logged_in_one(protected_app: LaunchedApp) -> None:
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types across versions
        Client(protected_app.url, verbose=False).predict(prompt_text="a cat", step_count=1, api_name="/t2v")
    client = Client(protected_app.url, auth=("ann", "secret"), verbose=False)
    video, details, _ = client.predict(prompt_text="a cat", step_count=1, api_name="/t2v")
    assert Path(video).exists() and details["frames"] == 9


def test_files_outside_the_outputs_folder_are_refused(launched_app: LaunchedApp, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for target in (secret, Path("/etc/passwd"), Path(__file__)):
        # Quoted: the checkout path (this file's) may hold spaces, which a URL can't.
        url = f"{launched_app.url}gradio_api/file={urllib.parse.quote(str(target))}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code in (403, 404)
