"""Colour drift over a long video, without and with colour matching (issue 29).

Runs the same chain twice (a first clip and ``--continuations`` continuations, so 5 parts by default):
colour matching off (``color_match`` 0), then at ``--strength``. For each it prints the mean colour drift
of every continuation's new frames against the first part's frames (CIE76 delta E between mean LAB
colours, :func:`core.color_match.colour_drift`), the last part's being the headline figure.

With no arguments it uses the tiny random-weight test models on the CPU: their drift is whatever random
weights make, so the figures show the mechanism only. Real models need a GPU and their weights:

    python bench/chain_drift.py                                  # tiny models, CPU
    python bench/chain_drift.py --t2v wan2.1-t2v-1.3b --continue-model skyreels-v2-df-1.3b-540p \\
        --width 832 --height 480 --frames 81 --steps 30 --seconds 4 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.color_match import colour_drift, lab_stats
from core.jobs import JobQueue, JobStatus
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request
from core.video_io import read_frames


def run_chain(settings: Settings, device: torch.device, data: dict) -> dict:
    queue = JobQueue([Runner(settings, device).execute])
    job = queue.submit(parse_request(data))
    version = -1
    while not job.finished:
        version = job.wait_for_change(version, 5.0)
    queue.shutdown()
    if job.status != JobStatus.DONE:
        raise SystemExit(f"chain failed: {job.error}")
    return job.result


def drifts(record: dict) -> list[float]:
    """Each continuation's new frames' drift from the first part's frames."""
    folder = Path(record["job_folder"])
    first, *continued = record["parts"]
    reference = lab_stats(read_frames(folder / first["output"]))
    out = []
    for part in continued:
        frames = read_frames(folder / part["output"])
        out.append(colour_drift(frames[len(frames) - part["added_frames"] :], reference))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--t2v", default="tiny-wan")
    parser.add_argument("--continue-model", default="tiny-skyreels-df")
    parser.add_argument("--continuations", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--prompt", default="a red boat on a calm lake at sunset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as temp:
        models = args.models_dir or Path(temp) / "models"
        settings = Settings(outputs_dir=Path(temp) / "outputs", models_dir=models, offline=True, dev=True)
        t2v = {
            "model": args.t2v,
            "prompt": args.prompt,
            "width": args.width,
            "height": args.height,
            "frames": args.frames,
            "steps": args.steps,
            "seed": args.seed,
        }
        results = {}
        for strength in (0.0, args.strength):
            record = run_chain(
                settings,
                torch.device(args.device),
                {
                    "task": "chain",
                    "t2v": t2v,
                    "continuations": args.continuations,
                    "seconds": args.seconds,
                    "continue_model": args.continue_model,
                    "color_match": strength,
                },
            )
            results[strength] = drifts(record)
    print(f"{1 + args.continuations}-part chain: {args.t2v} then {args.continue_model}, seed {args.seed}")
    print("mean colour drift from part 1 (delta E of mean LAB colour), parts 2..n:")
    for strength, values in results.items():
        label = "off" if strength == 0 else f"strength {strength}"
        print(
            f"  colour match {label:>12}: "
            + " ".join(f"{v:6.2f}" for v in values)
            + f"   last part {values[-1]:.2f}, mean {np.mean(values):.2f}"
        )


if __name__ == "__main__":
    main()
