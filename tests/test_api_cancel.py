"""The launched app through gradio_client: cancel one job by its id, readable errors for bad inputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gradio_client import Client

from core.errors import job_error_message, readable_error
from core.validation import ConfigError
from core.video_io import probe_video
from weights.download import DownloadError
from weights.store import ModelMissingError

pytestmark = pytest.mark.e2e


def first_output(job, test, timeout: float = 120.0):
    """The first streamed output ``(video, details, status)`` of ``job`` that passes ``test``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for out in job.outputs():
            if isinstance(out, (tuple, list)) and len(out) == 3 and test(out):
                return out
        time.sleep(0.1)
    raise AssertionError(f"no such output in time; got {job.outputs()}")


def job_id_of(job) -> str:
    """The job id the job endpoints stream in their details as soon as the job is queued."""
    return first_output(job, lambda out: isinstance(out[1], dict) and "job_id" in out[1])[1]["job_id"]


def test_cancel_job_cancels_only_that_job(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    long = client.submit(prompt_text="a slow river", step_count=200, seed_value=1, api_name="/t2v")
    long_id = job_id_of(long)
    first_output(long, lambda out: "/200" in str(out[2]))  # denoising: it runs
    short = client.submit(prompt_text="a quick bird", step_count=2, seed_value=2, api_name="/t2v")
    dropped = client.submit(prompt_text="never made", step_count=2, seed_value=3, api_name="/t2v")
    short_id, dropped_id = job_id_of(short), job_id_of(dropped)
    assert len({long_id, short_id, dropped_id}) == 3

    with pytest.raises(Exception, match="another session"):  # only the submitting client may cancel
        Client(launched_app.url, verbose=False).predict(short_id, api_name="/cancel_job")
    assert "before it started" in client.predict(dropped_id, api_name="/cancel_job")
    assert client.predict(long_id, api_name="/cancel_job").startswith(f"Cancelling {long_id}")

    video, details, status = short.result(timeout=300)
    assert status.startswith("Done") and details["job_id"] == short_id
    assert probe_video(Path(video)).frames == details["frames"]
    video, details, status = long.result(timeout=300)
    assert status.startswith("Cancelled during") and details["job_id"] == long_id
    _, _, status = dropped.result(timeout=60)
    assert status.startswith("Cancelled")
    assert "already finished (done)" in client.predict(short_id, api_name="/cancel_job")
    with pytest.raises(Exception, match="no job 'job-0'"):
        client.predict("job-0", api_name="/cancel_job")


def test_wrong_input_types_are_readable_errors(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    for kwargs, message in (
        ({"frame_count": "nine"}, "frame_count must be a number, got 'nine'"),
        ({"seed_value": "abc"}, "seed must be a whole number, got 'abc'"),
        ({"step_count": None}, "step_count must be a number, got None"),
    ):
        with pytest.raises(Exception, match=message):
            client.predict(prompt_text="a cat", api_name="/t2v", **kwargs)
    with pytest.raises(Exception, match="unknown model None") as raised:
        client.predict(None, api_name="/download_model")
    assert "ConfigError" not in str(raised.value)
    # a job that fails on a project error shows its message without the class name
    with pytest.raises(Exception, match="is not downloaded") as raised:
        client.predict(
            model_id="wan2.1-t2v-1.3b",
            prompt_text="x",
            resolution_label="832x480",
            step_count=1,
            api_name="/t2v",
        )
    assert "ModelMissingError" not in str(raised.value)


def test_error_messages_drop_the_class_name_of_the_projects_own_errors() -> None:
    assert (
        readable_error(ConfigError("width 840 is not divisible by 16")) == "width 840 is not divisible by 16"
    )
    assert readable_error(DownloadError("every hub failed")) == "every hub failed"
    assert readable_error(KeyError("x")) == "KeyError: 'x'"
    assert (
        job_error_message(f"{ModelMissingError.__name__}: not downloaded: see docs")
        == "not downloaded: see docs"
    )
    assert job_error_message("DownloadError: every hub failed") == "every hub failed"
    assert job_error_message("RuntimeError: CUDA error") == "RuntimeError: CUDA error"
    assert job_error_message(None) == "the job failed"
