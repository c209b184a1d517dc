"""Batch rows name only files uploaded with the batch, in the outputs folder or an allowed folder; every
refusal is the same message, whether the file exists or not (issue 34, item 1)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.batch import run_batch
from core.batch_files import refusal, resolve_row_files
from core.validation import ConfigError
from core.video_io import write_video

pytest_plugins = ["tests.conftest_workflow"]


def split_row(video: str) -> dict[str, object]:
    """An upscale row a one-GPU studio refuses as "needs 2 GPUs" once its file passed (nothing is read)."""
    return {"task": "upscale", "model": "tiny-flashvsr", "video": video, "pipeline_gpus": 2}


def test_server_paths_are_refused_alike_whether_or_not_they_exist(tmp_path: Path) -> None:
    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    outputs.mkdir()
    elsewhere.mkdir()
    real = elsewhere / "secret.mp4"
    real.write_bytes(b"not for batches")
    (outputs / "link.mp4").symlink_to(real)
    messages = set()
    for video in (
        str(real),
        str(elsewhere / "missing.mp4"),
        "/etc/passwd",
        "../elsewhere/secret.mp4",
        str(outputs / "link.mp4"),
        str(outputs / ".." / "elsewhere" / "secret.mp4"),
    ):
        with pytest.raises(ConfigError) as refused:
            resolve_row_files({"video": video}, [], outputs)
        messages.add(str(refused.value))
    assert messages == {refusal("video")}
    assert "secret" not in refusal("video") and "exist" not in refusal("video")


def test_uploads_outputs_and_allowed_folders_are_accepted(tmp_path: Path) -> None:
    outputs, allowed, upload = tmp_path / "outputs", tmp_path / "mine", tmp_path / "gradio" / "clip.mp4"
    for folder in (outputs, allowed, upload.parent):
        folder.mkdir()
    upload.write_bytes(b"x")
    assert resolve_row_files({"video": "clip.mp4"}, [upload], outputs)["video"] == str(upload)
    inside = resolve_row_files({"video": "batches/a.mp4"}, [], outputs)["video"]
    assert inside == str((outputs / "batches" / "a.mp4").resolve())
    mine = str(allowed / "b.mp4")
    with pytest.raises(ConfigError):
        resolve_row_files({"video": mine}, [], outputs)
    assert resolve_row_files({"video": mine}, [], outputs, [allowed])["video"] == str(
        allowed.resolve() / "b.mp4"
    )
    assert resolve_row_files({"prompt": "no file"}, [], outputs) == {"prompt": "no file"}


def test_a_batch_row_naming_a_server_file_is_bad_and_runs_nothing(studio, tmp_path: Path) -> None:
    secret = write_video(tmp_path / "secret.mp4", np.zeros((3, 32, 32, 3), np.uint8), 8)
    upload = tmp_path / "upload" / "clip.mp4"
    upload.parent.mkdir()
    write_video(upload, np.zeros((3, 32, 32, 3), np.uint8), 8)
    prompts = tmp_path / "rows.json"
    rows = [split_row(str(secret)), split_row(str(tmp_path / "none.mp4")), split_row("clip.mp4")]
    prompts.write_text(json.dumps(rows), encoding="utf-8")
    studio.devices = [torch.device("cuda", 0)]  # what the check sees: one GPU
    batch = run_batch(studio, prompts, uploads=[upload])
    assert [r.status for r in batch.rows] == ["bad", "bad", "bad"]
    assert batch.rows[0].error == batch.rows[1].error == refusal("video")
    assert "needs 2 GPUs" in batch.rows[2].error  # the upload passed the file check
    assert batch.jobs == {}
    studio.settings = replace(studio.settings, allowed_dirs=(tmp_path,))
    again = run_batch(studio, prompts, uploads=[upload])
    assert "needs 2 GPUs" in again.rows[0].error
