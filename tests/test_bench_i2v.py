"""bench/i2v_speed.py end to end on the CPU: the tiny I2V model (``--dit tiny``), plain diffusers and ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.settings import ROOT


def test_i2v_bench_times_plain_and_ours(tmp_path: Path) -> None:
    command = [sys.executable, "bench/i2v_speed.py", "--dit", "tiny", "--steps", "2"]
    command += ["--json", str(tmp_path / "i2v.json"), "--cache-dir", str(tmp_path / "cache")]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| ")}
    assert {"plain", "ours"} <= set(rows)
    assert float(rows["plain"][4]) > 0 and float(rows["ours"][4]) > 0
    results = json.loads((tmp_path / "i2v.json").read_text())["results"]
    assert [r["option"] for r in results] == ["plain", "ours"]
    assert all(len(r["times_s"]) == 2 for r in results) and results[1]["speed"]["attention"]["on"]
