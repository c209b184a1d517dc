"""What a killed job leaves in outputs/ is handled at the next start (issue 34, item 8): the frames of a
fragmented partial are kept as ``_partial.mp4`` (listed in History), other temp files go, and nothing a
live app still writes is touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core.history import list_results
from core.outputs import new_output_path
from core.settings import ROOT
from core.stale_outputs import claim_outputs, clean_stale, temp_files
from core.video_io import probe_video, temp_path_for

RECORD = {"task": "upscale", "request": {"task": "upscale", "video": "in.mp4", "scale": 2}, "seed": 0}

WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from core.video_io import METADATA_KEY, VideoWriter
    writer = VideoWriter(sys.argv[1], 24, {METADATA_KEY: sys.argv[2]}, timed=True, fragmented=True)
    rng = np.random.default_rng(0)
    for index in range(120):
        writer.write(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), [index / 24])
    print("written", flush=True)
    time.sleep(60)
    """
)


def killed_writer(path: Path) -> None:
    """A process writing a fragmented video to ``path``'s temp file, killed with SIGKILL."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), json.dumps(RECORD | {"output": path.name})],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "written"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_a_killed_writers_frames_are_kept_and_other_temps_go(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    video = new_output_path(outputs, "upscale", "clip", 0)  # reserves the temp, as a job does
    killed_writer(video)
    assert temp_path_for(video).stat().st_size > 1000
    empty = new_output_path(outputs / "chains" / "c", "t2v", "x", 1)  # a reservation never written
    (outputs / ".row.json.part").write_text("{")
    _, alone = claim_outputs(outputs)
    assert alone
    recovered = clean_stale(outputs, alone)
    assert temp_files(outputs) == [] and not temp_path_for(empty).exists()
    assert [p.name for p in recovered] == [f"{video.stem}_partial.mp4"]
    assert 24 <= probe_video(recovered[0]).frames < 120  # the finished fragments, not the cut one
    [entry] = list_results(outputs)
    assert entry.partial and entry.record["status"] == "interrupted" and entry.path == recovered[0]


def test_files_of_a_live_app_are_left_alone(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from core.stale_outputs import claim_outputs; "
            "h = claim_outputs(sys.argv[1]); print(h[1], flush=True); time.sleep(60)",
            str(outputs),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        video = new_output_path(outputs, "t2v", "busy", 0)
        _, alone = claim_outputs(outputs)
        assert not alone
        clean_stale(outputs, alone)
        assert temp_path_for(video).exists()  # another app may be about to write it
        old = time.time() - 2 * 86400
        os.utime(temp_path_for(video), (old, old))
        clean_stale(outputs, alone)
        assert not temp_path_for(video).exists()  # a day untouched: left by a dead process
    finally:
        holder.kill()
        holder.wait()
