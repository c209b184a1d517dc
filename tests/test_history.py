"""History: results found at any depth by their sidecars, filtered, run again as the same request, deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.batch import run_batch
from core.history import delete_result, list_results, rerun_settings
from core.jobs import Job, JobStatus
from core.studio import Studio
from core.tasks import parse_request

pytest_plugins = ["tests.conftest_workflow"]

FAST = {"model": "tiny-wan", "steps": 1, "frames": 5}


def make(studio: Studio, **fields) -> Job:
    job = studio.submit(FAST | fields)
    for _ in studio.follow(job):
        pass
    assert job.status == JobStatus.DONE, job.error
    return job


def test_history_lists_filters_reruns_and_deletes(studio: Studio, tmp_path: Path) -> None:
    outputs = studio.settings.outputs_dir
    fox = make(studio, prompt="a red fox", seed=-1)
    owl = make(studio, prompt="an owl at night", seed=5, memory_level="0", cache={"preset": "off"})
    prompts = tmp_path / "list.txt"
    prompts.write_text("a Fox in a batch\n", encoding="utf-8")
    batch = run_batch(studio, prompts, FAST)
    (outputs / "notes.json").write_text("{}", encoding="utf-8")  # not a result: ignored

    entries = list_results(outputs)
    assert [e.prompt for e in entries] == ["a Fox in a batch", "an owl at night", "a red fox"]
    assert entries[0].path == Path(batch.rows[0].output)
    assert {e.task for e in entries} == {"t2v"} and entries[1].seed == 5 and entries[1].created
    assert [e.prompt for e in list_results(outputs, text="FOX")] == ["a Fox in a batch", "a red fox"]
    assert len(list_results(outputs, task="t2v", model="tiny-wan")) == 3
    assert list_results(outputs, task="upscale") == []
    assert list_results(outputs, model="wan2.1-t2v-1.3b") == []

    for job in (fox, owl):
        settings = rerun_settings(outputs, job.result["path"])
        assert parse_request(settings) == job.request  # the seeded request that ran
    assert rerun_settings(outputs, fox.result["path"])["seed"] == fox.result["seed"] >= 0
    same = {k: v for k, v in rerun_settings(outputs, owl.result["path"]).items() if k != "task"}
    again = make(studio, **same)
    assert again.request == owl.request

    removed = delete_result(outputs, owl.result["path"])
    assert [p.suffix for p in removed] == [".mp4", ".json"] and not any(p.exists() for p in removed)
    left = [e.path for e in list_results(outputs)]
    assert len(left) == 3 and Path(owl.result["path"]) not in left and Path(again.result["path"]) in left
    with pytest.raises(ValueError, match="not in the outputs folder"):
        delete_result(outputs, tmp_path / "elsewhere.mp4")
    with pytest.raises(ValueError, match="not a result"):
        delete_result(outputs, owl.result["path"])
