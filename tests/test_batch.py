"""Batches with the tiny model: good rows run, bad rows are reported, a second run skips what is done."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.batch import batch_folder, load_rows, main, run_batch
from core.validation import ConfigError
from core.video_io import probe_video, read_record, write_video

pytest_plugins = ["tests.conftest_workflow", "tests.conftest_magi_app"]


def write_csv(path: Path) -> Path:
    path.write_text(
        "prompt,seed,frames,steps,width\n"
        "a red fox,7,5,1,\n"
        "a green hill,8,5,1,48\n"
        "a broken row,9,6,1,\n",  # 6 frames is not 4k+1
        encoding="utf-8",
    )
    return path


def test_load_rows_reads_txt_csv_and_json(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\na cat\n\n  a dog  \n", encoding="utf-8")
    assert load_rows(txt) == [{"prompt": "a cat"}, {"prompt": "a dog"}]
    rows = load_rows(write_csv(tmp_path / "p.csv"))
    assert rows[0] == {"prompt": "a red fox", "seed": 7, "frames": 5, "steps": 1}
    assert rows[1]["width"] == 48
    data = [{"prompt": "x", "seed": 1, "cache": {"preset": "off"}}]
    (tmp_path / "p.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_rows(tmp_path / "p.json") == data


def test_batch_runs_good_rows_reports_bad_and_resumes(studio, tmp_path: Path) -> None:
    prompts = write_csv(tmp_path / "my prompts.csv")
    first = run_batch(studio, prompts, {"model": "tiny-wan"})
    assert [r.status for r in first.rows] == ["done", "done", "bad"]
    assert "frames must be 4k+1" in first.rows[2].error
    assert len(studio.queue.jobs()) == 2
    fox = Path(first.rows[0].output)
    assert fox.parent == batch_folder(studio.settings.outputs_dir, prompts) == first.batch_dir
    assert fox.parent.parent == studio.settings.outputs_dir / "batches"
    assert fox.parent.name.startswith("my-prompts-") and len(fox.parent.name) == len("my-prompts-") + 8
    assert fox.name == "row-0001-a-red-fox.mp4"
    assert (probe_video(fox).frames, probe_video(fox).height) == (5, 48)
    assert read_record(fox)["seed"] == 7 and first.rows[0].seed == 7
    assert probe_video(Path(first.rows[1].output)).width == 48
    sidecar = json.loads(fox.with_suffix(".json").read_text())
    assert sidecar["batch"] == {"file": "my prompts.csv", "row": 1, "sha256": first.sha256}
    assert not list(studio.settings.outputs_dir.glob("*.mp4"))  # moved into the batch folder
    with (first.batch_dir / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert [s["status"] for s in summary] == ["done", "done", "bad"]
    assert summary[0]["output"] == str(fox)

    second = run_batch(studio, prompts, {"model": "tiny-wan"})
    assert [r.status for r in second.rows] == ["skipped", "skipped", "bad"]
    assert second.jobs == {} and len(studio.queue.jobs()) == 2
    assert second.rows[0].seed == 7


def test_a_changed_row_runs_again(studio, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a boat\n", encoding="utf-8")
    defaults = {"model": "tiny-wan", "steps": 1, "frames": 5, "seed": 1}
    run_batch(studio, prompts, defaults)
    again = run_batch(studio, prompts, defaults | {"seed": 2})
    assert [r.status for r in again.rows] == ["done"] and again.rows[0].seed == 2
    assert len(studio.queue.jobs()) == 2


def test_cli_runs_a_batch_headless(settings, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "cli.json"
    prompts.write_text(json.dumps([{"prompt": "a tree", "steps": 1, "frames": 5, "seed": 3}, 5]))
    main(
        [
            str(prompts),
            "--outputs",
            str(settings.outputs_dir),
            "--models-dir",
            str(settings.models_dir),
            "--model",
            "tiny-wan",
            "--offline",
            "--dev",
        ]
    )
    out = capsys.readouterr().out
    assert "done" in out and "bad" in out and "summary.csv" in out
    assert (batch_folder(settings.outputs_dir, prompts) / "row-0001-a-tree.mp4").is_file()


def test_magi_rows_take_magi_fields_and_refuse_wan_ones(magi_models_dir, studio, tmp_path: Path) -> None:
    prompts = tmp_path / "magi.csv"
    prompts.write_text(
        "prompt,seconds,window_size,kv_budget,cache,negative_prompt,width\n"
        'a fox,1,1,64,"{""preset"": ""fast""}",,\n'
        "a bad row,1,,,,blurry,\n"
        "a wide row,1,,,,,64\n",
        encoding="utf-8",
    )
    batch = run_batch(studio, prompts, {"model": "tiny-magi"})
    assert [r.status for r in batch.rows] == ["done", "bad", "bad"]
    assert "MAGI-1 t2v request: unknown field(s) negative_prompt" in batch.rows[1].error
    assert "unknown field(s) width; known fields: cache, chunks" in batch.rows[2].error
    fox = Path(batch.rows[0].output)
    assert fox.name == "row-0001-a-fox.mp4" and probe_video(fox).frames == 24
    request = read_record(fox)["request"]
    assert (request["chunks"], request["window_size"], request["kv_budget"]) == (1, 1, 64)
    assert request["cache"] == {"preset": "fast"}
    again = run_batch(studio, prompts, {"model": "tiny-magi"})
    assert [r.status for r in again.rows] == ["skipped", "bad", "bad"]


def test_rows_get_the_machine_check_that_single_jobs_get(studio, tmp_path: Path) -> None:
    """An upscale split over 2 GPUs on a one-GPU studio is refused when queued, in a batch as alone."""
    video = studio.settings.outputs_dir / "clip.mp4"  # rows may name files in the outputs folder
    write_video(video, np.zeros((3, 32, 32, 3), np.uint8), 8)
    row = {"task": "upscale", "model": "tiny-flashvsr", "video": str(video), "pipeline_gpus": 2}
    prompts = tmp_path / "split.json"
    prompts.write_text(json.dumps([row]), encoding="utf-8")
    studio.devices = [torch.device("cuda", 0)]  # what the check sees: one GPU
    with pytest.raises(ConfigError, match="needs 2 GPUs"):
        studio.submit(row)
    batch = run_batch(studio, prompts)
    assert [r.status for r in batch.rows] == ["bad"] and "needs 2 GPUs" in batch.rows[0].error
    assert batch.jobs == {} and studio.queue.jobs() == []


def test_different_files_of_the_same_name_never_share_a_folder(studio, tmp_path: Path) -> None:
    """prompts.txt, prompts.csv and other/prompts.csv: three folders, no row video replaced."""
    defaults = {"model": "tiny-wan", "steps": 1, "frames": 5}
    txt = tmp_path / "prompts.txt"
    txt.write_text("a red car\n", encoding="utf-8")
    first = run_batch(studio, txt, defaults | {"seed": 5})
    car = Path(first.rows[0].output)
    assert car.name == "row-0001-a-red-car.mp4" and read_record(car)["seed"] == 5
    car_bytes = car.read_bytes()

    csv_file = tmp_path / "prompts.csv"
    csv_file.write_text("prompt,seed\na red car,6\n", encoding="utf-8")
    (tmp_path / "other").mkdir()
    other = tmp_path / "other" / "prompts.csv"
    other.write_text("prompt,seed\na red car,7\n", encoding="utf-8")
    second = run_batch(studio, csv_file, defaults)
    third = run_batch(studio, other, defaults)
    assert [r.status for r in second.rows + third.rows] == ["done", "done"]
    folders = {first.batch_dir, second.batch_dir, third.batch_dir}
    assert len(folders) == 3 and all(f.name.startswith("prompts-") for f in folders)
    assert read_record(car)["seed"] == 5 and car.read_bytes() == car_bytes  # the first video untouched
    assert read_record(Path(second.rows[0].output))["seed"] == 6
    assert read_record(Path(third.rows[0].output))["seed"] == 7
    for batch, seed in ((first, "5"), (second, "6"), (third, "7")):
        with (batch.batch_dir / "summary.csv").open() as handle:
            assert [row["seed"] for row in csv.DictReader(handle)] == [seed]
    assert len(studio.queue.jobs()) == 3


def test_the_same_file_again_resumes_in_its_folder(studio, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a boat\n", encoding="utf-8")
    defaults = {"model": "tiny-wan", "steps": 1, "frames": 5, "seed": 1}
    first = run_batch(studio, prompts, defaults)
    copy = tmp_path / "upload"
    copy.mkdir()
    (copy / "prompts.txt").write_bytes(prompts.read_bytes())  # an upload of the same file elsewhere
    for path in (prompts, copy / "prompts.txt"):
        again = run_batch(studio, path, defaults)
        assert again.batch_dir == first.batch_dir
        assert [r.status for r in again.rows] == ["skipped"] and again.jobs == {}
    assert len(studio.queue.jobs()) == 1


def test_a_row_video_of_another_batch_is_never_overwritten(studio, tmp_path: Path) -> None:
    """Even if two files' folders clashed (hash prefix), a row of another batch is reported, not replaced."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a boat\n", encoding="utf-8")
    defaults = {"model": "tiny-wan", "steps": 1, "frames": 5, "seed": 1}
    first = run_batch(studio, prompts, defaults)
    boat = Path(first.rows[0].output)
    sidecar = boat.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["batch"] |= {"file": "q.txt", "sha256": "0" * 64}
    sidecar.write_text(json.dumps(record))
    again = run_batch(studio, prompts, defaults | {"seed": 2})  # a changed row would run again
    assert [r.status for r in again.rows] == ["bad"] and again.jobs == {}
    assert "belongs to another batch (q.txt); not overwritten" in again.rows[0].error
    assert read_record(boat)["seed"] == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.txt", ""),
        ("comments.txt", "# only a comment\n\n   \n# another\n"),
        ("empty.json", "[]"),
        ("blank.json", "  \n"),
        ("header.csv", "prompt,seed,frames\n"),
        ("empty.csv", ""),
    ],
)
def test_an_empty_batch_is_refused_before_any_folder(studio, tmp_path: Path, name: str, text: str) -> None:
    prompts = tmp_path / name
    prompts.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{name}: the batch file has no rows"):
        load_rows(prompts)
    with pytest.raises(ConfigError, match="the batch file has no rows"):
        run_batch(studio, prompts, {"model": "tiny-wan"})
    assert not (studio.settings.outputs_dir / "batches").exists()
    assert studio.queue.jobs() == []


def test_a_failed_row_shows_the_message_without_the_class_name(studio, tmp_path: Path) -> None:
    """A model that is not downloaded (offline) fails when the row runs: the row says why, in user words."""
    prompts = tmp_path / "missing.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    batch = run_batch(studio, prompts, {"model": "wan2.1-t2v-1.3b", "frames": 5, "steps": 1})
    [row] = batch.rows
    assert row.status == "failed" and row.error
    assert not row.error.startswith("ModelMissingError"), row.error
    assert "wan2.1-t2v-1.3b" in row.error
