"""History as a gallery: a cached thumbnail per result, sort orders, sizes on disk, and deleting a batch's
result marks its row deleted in the batch summary (json and csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from core.batch import run_batch
from core.facade import Facade
from core.jobs import JobStatus
from core.studio import Studio

pytest_plugins = ["tests.conftest_workflow"]

FAST = {"model": "tiny-wan", "steps": 1, "frames": 5}


def test_gallery_sorts_sizes_thumbnails_and_delete_updates_batch_summaries(
    studio: Studio, tmp_path: Path
) -> None:
    outputs = studio.settings.outputs_dir
    job = studio.submit(FAST | {"prompt": "a lone heron", "seed": 1, "width": 96, "height": 64})
    for _ in studio.follow(job):
        pass
    assert job.status == JobStatus.DONE, job.error
    prompts = tmp_path / "list.txt"
    prompts.write_text("a batch fox\n", encoding="utf-8")
    batch = run_batch(studio, prompts, FAST)
    facade = Facade(studio)

    items, paths, total = facade.history_gallery("", "", "", "newest")
    assert [caption.split(" · ")[1] for _, caption in items] == ["a batch fox", "a lone heron"]
    thumbs = [Path(picture) for picture, _ in items]
    assert all(p.suffix == ".jpg" and p.parent == outputs / ".studio" / "thumbs" for p in thumbs)
    assert Image.open(thumbs[1]).size == (192, 128)  # 96x64 scaled to the thumbnail width
    stamp = thumbs[0].stat().st_mtime_ns
    assert facade.history_gallery("", "", "fox", "oldest")[0][0][0] == str(thumbs[0])  # cached, filtered
    assert thumbs[0].stat().st_mtime_ns == stamp
    assert [Path(p).name for p in facade.history_gallery("", "", "", "oldest")[1]] == [
        Path(p).name for p in paths[::-1]
    ]
    sizes = {
        Path(p).stem: Path(p).stat().st_size + Path(p).with_suffix(".json").stat().st_size for p in paths
    }
    largest = facade.history_gallery("", "", "", "largest")[1]
    assert [sizes[Path(p).stem] for p in largest] == sorted(sizes.values(), reverse=True)
    assert total.startswith("2 result(s) · ") and "B on disk" in total

    message = facade.delete_result(str(Path(batch.rows[0].output).relative_to(outputs)))
    assert "marked deleted in 1 batch summary" in message
    rows = json.loads((batch.batch_dir / "summary.json").read_text())["rows"]
    assert [(r["prompt"], r["status"]) for r in rows] == [("a batch fox", "deleted")]
    with (batch.batch_dir / "summary.csv").open(encoding="utf-8") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["deleted"]
    assert facade.history_gallery("", "", "", "model")[2].startswith("1 result(s)")
