"""bench/multigpu.py end to end on the CPU: a two-block DiT (``--dit tiny``) split over two gloo ranks."""

from __future__ import annotations

import subprocess
import sys

from core.settings import ROOT


def test_split_bench_times_each_split_and_matches_the_one_gpu_latents() -> None:
    command = [sys.executable, "bench/multigpu.py", "split", "--gpus", "2", "--dit", "tiny"]
    command += ["--model", "wan2.1-t2v-1.3b", "--sizes", "64x64", "--frames", "5", "--steps", "3"]
    command += ["--splits", "cfg,cp", "cp"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"1 GPU", "cfg 2", "ulysses 2"}
    for name in ("cfg 2", "ulysses 2"):
        high, cosine = (float(value) for value in rows[name][8].split(","))
        assert high < 1e-4 and cosine > 0.9999
        assert float(rows[name][3]) > 0
