"""Output names: unique per job even when jobs start in the same second, reserved atomically."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core.outputs import new_output_path, reserved_output_path
from core.video_io import VideoWriter, probe_video, temp_path_for


def _pick(folder: str) -> str:
    return new_output_path(Path(folder), "t2v", "a cat", 7).name


def test_same_prompt_and_seed_get_different_names_each_reserved(tmp_path):
    first = new_output_path(tmp_path, "t2v", "a cat", 7)
    second = new_output_path(tmp_path, "t2v", "a cat", 7)
    assert first != second and first.parent == second.parent == tmp_path
    assert temp_path_for(first).exists() and temp_path_for(second).exists()
    assert not first.exists() and not second.exists()


def test_threads_and_processes_starting_together_never_share_a_name(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(_pick, [str(tmp_path)] * 16))
    with multiprocessing.get_context("fork").Pool(4) as pool:
        names += pool.map(_pick, [str(tmp_path)] * 8)
    assert len(set(names)) == len(names) == 24
    assert len(list(tmp_path.glob(".*.part.mp4"))) == 24


def test_the_writer_fills_the_reservation_and_leaves_no_hidden_file(tmp_path):
    path = new_output_path(tmp_path, "t2v", "a cat", 7)
    with VideoWriter(path, 8) as writer:
        writer.write(np.zeros((3, 16, 16, 3), np.uint8))
    assert probe_video(path).frames == 3
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    discarded = new_output_path(tmp_path, "t2v", "a cat", 7)
    VideoWriter(discarded, 8).discard()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_without_reserve_only_a_free_name_is_picked(tmp_path):
    path = new_output_path(tmp_path / "new", "chain", "a cat", 7, reserve=False)
    assert not (tmp_path / "new").exists() and path.name.endswith("_chain_a-cat_7.mp4")


def test_failed_and_empty_writes_leave_no_reservation(tmp_path):
    empty = new_output_path(tmp_path, "t2v", "a cat", 7)
    with pytest.raises(ValueError, match="no frames"):
        VideoWriter(empty, 8).commit()
    with pytest.raises(RuntimeError, match="boom"), reserved_output_path(tmp_path, "cmp", "a vs b") as path:
        raise RuntimeError("boom")
    assert not temp_path_for(path).exists() and list(tmp_path.iterdir()) == []


def test_a_kept_partial_keeps_its_name_taken(tmp_path):
    path = new_output_path(tmp_path, "t2v", "a cat", 7)
    writer = VideoWriter(path, 8)
    writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert writer.keep_partial() == tmp_path / f"{path.stem}_partial.mp4"
    assert new_output_path(tmp_path, "t2v", "a cat", 7) != path
