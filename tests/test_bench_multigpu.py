"""bench/multigpu.py end to end on the CPU: a two-block DiT (``--dit tiny``) split over two gloo ranks."""

from __future__ import annotations

import subprocess
import sys

from core.settings import ROOT


def test_split_bench_times_a_cfg_free_case_and_matches_the_one_gpu_run() -> None:
    """A CFG-free case (Ulysses, the prompt encoded on rank 0 only) timed against one process; 128x64 makes
    the real-shape VAE decode split in two bands. (CFG parallel's equality is tests/test_parallel_split.py's;
    one case keeps this end-to-end run of the bench short.)"""
    command = [sys.executable, "bench/multigpu.py", "split", "--gpus", "2", "--dit", "tiny"]
    command += [
        "--model",
        "wan2.1-t2v-1.3b",
        "--sizes",
        "128x64",
        "--frames",
        "1",
        "--cases",
        "2:nocfg",
    ]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 2:")]
    splits = {(row[0].strip(), row[2].strip()): row for row in rows if row[1].strip() == "2"}
    assert set(splits) == {("2:nocfg", "ulysses 2")}
    for row in splits.values():
        assert float(row[4]) > 0 and float(row[6]) > 0
        high, cosine = (float(value) for value in row[9].split(","))
        assert high < 1e-4 and cosine > 0.9999, "the DiT's latents are the one-process ones"
        assert float(row[10]) < 0.1, "frames decoded in two bands stay close to the whole-frame decode"
    goals = [line for line in out.splitlines() if line.startswith("| 2 GPUs 50:cfg >= 1.9x")]
    assert goals == ["| 2 GPUs 50:cfg >= 1.9x | - | not run |"]
