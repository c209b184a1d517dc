"""Multi-GPU speed-up: one request split over N GPUs against one GPU, and jobs/hour with a worker per GPU.

``split``: Wan2.1 (random weights of the real shapes, built straight on each GPU) at each size, 81 frames,
for each case ``STEPS:cfg`` (guidance 5) or ``STEPS:nocfg`` (guidance 1, the few-step mode's CFG-free
jobs); the plain single-GPU :class:`core.runner.Runner` first, then our
:class:`core.parallel.split.SplitGroup` on each GPU count, with the split the app's planner picks (``auto``:
CFG parallel with guidance, Ulysses without, CFG x Ulysses on 4) or those asked for; each after an untimed
2-step warm-up job. Every time is measured, none computed: the DiT step between the first and the last
denoising report, and the whole job from its prompt encoding to the written video (after the model load;
the split ranks encode the prompt once and decode a band each). The final latents are compared with the
one-GPU run of the same seed, the frames with those latents decoded whole in float32 (the pipeline's
decode; the one-GPU job itself streams its decode); issue 32's goals are checked at the end.
``jobs``: Wan2.1
1.3B jobs through the app's :class:`core.parallel.dispatch.GpuDispatcher` (each job on one worker,
``multi_gpu="one"``) with 1 and then N workers, after one warm-up job per worker. Both use memory level 0,
SDPA and no compile or step cache. ``--record`` writes the measured speed-ups into
``presets/multigpu_speedups.yaml`` (the planner's figures). On the CPU (gloo, ``--dit tiny``) it checks the
mechanics and the equality only: CPU times mean nothing.

    python bench/multigpu.py split --gpus 2 4 [--cases 50:cfg 4:nocfg --sizes 832x480,1280x720 --record]
    python bench/multigpu.py jobs --gpus 2 4 [--jobs 8 --steps 10 --record]
    python bench/multigpu.py split --gpus 2 --dit tiny --sizes 64x64 --frames 5 --cases 3:cfg 3:nocfg  # CPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_wan import (
    random_runner,
    random_worker_executor,
    saved_frames,
    saved_latents,
    use_random_weights,
    whole_frames,
)
from core.jobs import Job, JobQueue, JobStatus
from core.parallel.config import parse_parallel_flag
from core.parallel.dispatch import GpuDispatcher
from core.parallel.planner import plan_parallel
from core.parallel.speedups import Figure, record_figure
from core.parallel.split import SplitGroup
from core.settings import Settings
from core.tasks.t2v import T2VRequest

GOALS = (
    ("split", 2, "50:cfg", 1.9),
    ("split", 2, "4:nocfg", 1.8),
    ("split", 4, "50:cfg", 3.5),
    ("jobs", 4, "", 3.8),
)
"""Issue 32's goals: (part, GPUs, case, least job speed-up) at the first size (832x480 for the 14B)."""


class TimedJob(Job):
    """A job that keeps the time of each denoising progress report."""

    def __init__(self, request: Any) -> None:
        super().__init__(request)
        self.step_times: list[tuple[int, float]] = []
        self.loaded_at: float | None = None

    def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
        if stage == "denoising":
            self.step_times.append((step, time.perf_counter()))
        elif stage == "encoding prompt" and self.loaded_at is None:
            self.loaded_at = time.perf_counter()
        super().report(stage, step, total, detail)

    def seconds_per_step(self) -> float:
        """Mean time per DiT step from the first to the last step report (needs 2 or more steps)."""
        (first, started), (last, ended) = self.step_times[0], self.step_times[-1]
        return (ended - started) / max(last - first, 1)


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def latent_difference(plain: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Max absolute difference and cosine similarity of two runs' final latents (what the DiT made; the
    frames of random weights saturate, so they would hide a difference)."""
    a, b = plain.astype(np.float64).ravel(), other.astype(np.float64).ravel()
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    return float(np.abs(a - b).max()), cosine


def describe_gpus(count: int) -> str:
    if not torch.cuda.is_available():
        return "CPU"
    names = {torch.cuda.get_device_name(index) for index in range(count)}
    return f"{count} x {', '.join(sorted(names))}"


def split_name(parallel: dict[str, int]) -> str:
    """e.g. ``cfg 2`` or ``cfg 2, ulysses 2``: the degrees above 1 of a record's ``parallel``."""
    return ", ".join(f"{key} {value}" for key, value in parallel.items() if key != "world_size" and value > 1)


def parse_case(text: str) -> tuple[int, float]:
    """``50:cfg`` -> (50 steps, guidance 5.0); ``4:nocfg`` -> (4, 1.0)."""
    steps, _, kind = text.partition(":")
    if kind not in ("cfg", "nocfg"):
        raise SystemExit(f"a case is STEPS:cfg or STEPS:nocfg, got {text!r}")
    return int(steps), 5.0 if kind == "cfg" else 1.0


def bench_request(
    args: argparse.Namespace, size: tuple[int, int], seed: int, steps: int | None = None, **fields: Any
) -> T2VRequest:
    """A bench request: ``args``' model and frames at ``size``; level 0, SDPA, no compile."""
    return T2VRequest(
        model=args.model,
        prompt=f"a cat walking on a beach, take {seed}",
        frames=args.frames,
        width=size[0],
        height=size[1],
        steps=steps or args.steps,
        seed=seed,
        memory_level="0",
        speed={"attention": "sdpa", "compile": False},
        **fields,
    )


Row = tuple[str, int, str, tuple[int, int], float, float, float, dict[str, Any]]
"""Case, GPUs, split name, size, DiT s/step, job s, peak GiB and the record."""


def timed_row(
    run: Any, request: T2VRequest, case: str, gpus: int, size: tuple[int, int], name: str = ""
) -> Row:
    """Run ``request`` through ``run`` and time it: the job time runs from its prompt encoding (after the
    model load) to its record; ``name`` defaults to the split the record names."""
    job = TimedJob(request)
    record = run(job)
    seconds = time.perf_counter() - (job.loaded_at or 0.0)
    name = name or split_name(record["parallel"])
    step = job.seconds_per_step()
    print(f"{case} {gpus} GPU {name} {size}: {step:.3f} s/step, job {seconds:.1f} s", flush=True)
    return case, gpus, name, size, step, seconds, record["peak_memory_gb"], record


def split_modes(args: argparse.Namespace, request: T2VRequest, gpus: int) -> list[tuple[str, ...]]:
    """The splits to time on ``gpus`` GPUs: the planner's pick for ``auto``, else those asked for that the
    request allows (CFG parallel needs guidance)."""
    if args.splits == ["auto"]:
        return [plan_parallel(1, gpus, request, choice="split").modes]
    modes = [parse_parallel_flag(split) for split in args.splits]
    return [m for m in modes if request.guidance > 1.0 or "cfg" not in m]


def bench_split(args: argparse.Namespace, settings: Settings, folder: Path) -> list[Row]:
    sizes = list(map(parse_size, args.sizes.split(",")))
    cases = {case: parse_case(case) for case in args.cases}
    requests = {
        (case, size): bench_request(args, size, 0, steps, guidance=guidance)
        for case, (steps, guidance) in cases.items()
        for size in sizes
    }
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    runner = random_runner(settings, device, folder, args.dit)
    warm_up = replace(next(iter(requests.values())), steps=2, guidance=1.0)
    runner.execute(Job(warm_up))
    rows = [timed_row(runner.execute, r, case, 1, size, "1 GPU") for (case, size), r in requests.items()]
    runner.models.unload()
    setup = partial(use_random_weights, folder, args.dit)
    for gpus in args.gpus:
        with SplitGroup(settings, gpus, rank_setup=setup) as group:
            group.run(Job(warm_up), warm_up, split_modes(args, warm_up, gpus)[0])
            for (case, size), request in requests.items():
                for modes in split_modes(args, request, gpus):

                    def run_split(job: Job, modes: tuple[str, ...] = modes) -> dict[str, Any]:
                        return group.run(job, job.request, modes)

                    rows.append(timed_row(run_split, request, case, gpus, size))
    print_split_table(args, rows)
    return rows


def print_split_table(args: argparse.Namespace, rows: list[Row]) -> None:
    print(f"\n{args.model} random weights, {args.frames} frames, {describe_gpus(max(args.gpus))}")
    print(
        "| case | GPUs | split | size | DiT s/step | speed-up | job s | job speed-up | peak GiB "
        "| latent max diff, cos | frames max diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = {(case, size): (step, job, rec) for case, gpus, _, size, step, job, _, rec in rows if gpus == 1}
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    whole = {key: whole_frames(saved_latents(plain), device) for key, (_, _, plain) in base.items()}
    for case, gpus, name, size, step, job_s, peak, record in rows:
        base_step, base_job, plain = base[case, size]
        high, cosine = latent_difference(saved_latents(plain), saved_latents(record))
        mine = whole[case, size] if gpus == 1 else saved_frames(record)
        frames = np.abs(whole[case, size].astype(np.float64) - mine).max()
        print(
            f"| {case} | {gpus} | {name} | {size[0]}x{size[1]} | {step:.3f} | {base_step / step:.2f}x | "
            f"{job_s:.1f} | {base_job / job_s:.2f}x | {peak:.1f} | {high:.2e}, {cosine:.6f} | {frames:.2e} |"
        )


def job_speedups(rows: list[Row]) -> dict[tuple[str, int, str, tuple[int, int]], float]:
    """(case, GPUs, split, size) -> one-GPU job time over this job time."""
    base = {(case, size): job for case, gpus, _, size, _, job, _, _ in rows if gpus == 1}
    return {(c, g, n, size): base[c, size] / job for c, g, n, size, _, job, _, _ in rows if g > 1}


def record_split(args: argparse.Namespace, rows: list[Row]) -> None:
    """The best split of each case, GPU count and size into the planner's figures."""
    best: dict[tuple, tuple[float, str]] = {}
    for (case, gpus, name, size), speedup in job_speedups(rows).items():
        best[case, gpus, size] = max(best.get((case, gpus, size), (0.0, "")), (speedup, name))
    for (case, gpus, size), (speedup, name) in best.items():
        steps, guidance = parse_case(case)
        record_figure(
            Figure(
                "split",
                args.model,
                gpus,
                round(speedup, 3),
                cfg=guidance > 1.0,
                steps=steps,
                size=f"{size[0]}x{size[1]}",
                split=name,
                device=describe_gpus(gpus),
                source=source_note(args),
            )
        )


def source_note(args: argparse.Namespace) -> str:
    """Where a recorded figure came from: this bench, the part, the day and the DiT's weights."""
    weights = "tiny" if args.dit == "tiny" else "random-weight"
    return f"bench/multigpu.py {args.part} {time.strftime('%Y-%m-%d')} ({weights} DiT)"


def run_batch(queue: JobQueue, requests: list[T2VRequest]) -> float:
    """Submit ``requests`` at once and wait for all of them; the seconds it took. Raises if one failed."""
    started = time.perf_counter()
    jobs = [queue.submit(request) for request in requests]
    for job in jobs:
        seen = 0
        while not job.finished:
            seen = job.wait_for_change(seen, timeout=1.0)
        if job.status != JobStatus.DONE:
            raise RuntimeError(f"{job.id} {job.status.value}: {job.error}")
    return time.perf_counter() - started


def bench_jobs(args: argparse.Namespace, settings: Settings, folder: Path) -> list[tuple[int, float]]:
    size = parse_size(args.sizes.split(",")[0])

    def request(seed: int) -> T2VRequest:
        return bench_request(args, size, seed, multi_gpu="one")

    make_executor = partial(random_worker_executor, folder, args.dit)
    results: list[tuple[int, float]] = []
    for workers in sorted({1, *args.gpus}):
        gpus: list[int | None] = list(range(workers)) if torch.cuda.is_available() else [None] * workers
        queue: JobQueue | None = None
        dispatcher = GpuDispatcher(settings, gpus, lambda: 0, make_executor)
        try:
            queue = JobQueue(dispatcher.executors())
            warm_up = run_batch(queue, [request(1000 + index) for index in range(workers)])
            seconds = run_batch(queue, [request(index) for index in range(args.jobs)])
        finally:
            if queue is not None:
                queue.shutdown()
            dispatcher.shutdown()
        results.append((workers, seconds))
        print(f"{workers} worker(s): warm-up {warm_up:.1f} s, {args.jobs} jobs {seconds:.1f} s", flush=True)
    print(
        f"\n{args.model} random weights, {size[0]}x{size[1]} {args.frames} frames, {args.steps} steps a job, "
        f"{describe_gpus(max(args.gpus))}"
    )
    print("| workers | jobs | seconds | s/job | jobs/hour | vs 1 worker |")
    print("|---|---|---|---|---|---|")
    base = results[0][1]
    for workers, seconds in results:
        per_hour = args.jobs / seconds * 3600
        print(
            f"| {workers} | {args.jobs} | {seconds:.1f} | {seconds / args.jobs:.1f} | {per_hour:.0f} | "
            f"{base / seconds:.2f}x |"
        )
    if args.record:
        for workers, seconds in results[1:]:
            record_figure(
                Figure(
                    "workers",
                    args.model,
                    workers,
                    round(base / seconds, 3),
                    steps=args.steps,
                    size=f"{size[0]}x{size[1]}",
                    device=describe_gpus(workers),
                    source=source_note(args),
                )
            )
    return results


def print_goals(args: argparse.Namespace, measured: dict[tuple[str, int, str], float]) -> None:
    """Issue 32's goals for this part: met, missed or not run (GPU count or case not timed)."""
    print("\n| goal | measured | result |")
    print("|---|---|---|")
    for part, gpus, case, least in GOALS:
        if part != args.part:
            continue
        what = f"{gpus} GPUs {case or 'a worker per GPU'} >= {least}x"
        value = measured.get((part, gpus, case))
        verdict = "not run" if value is None else ("met" if value >= least else "MISSED")
        print(f"| {what} | {'-' if value is None else f'{value:.2f}x'} | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("split", "jobs"))
    parser.add_argument("--gpus", type=int, nargs="+", default=[2], help="GPU counts to time, e.g. 2 4")
    parser.add_argument("--model", default=None, help="default: 14B for split, 1.3B for jobs")
    parser.add_argument("--dit", default="", choices=("", "1.3b", "14b", "tiny"), help="DiT shape override")
    parser.add_argument("--sizes", default="832x480", help="WxH list (split); the first one (jobs)")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--cases", nargs="+", default=["50:cfg", "4:nocfg"], help="STEPS:cfg|nocfg (split)")
    parser.add_argument("--steps", type=int, default=10, help="steps a job (jobs)")
    parser.add_argument(
        "--splits", nargs="+", default=["auto"], help="auto (the planner's), or e.g. cfg,cp cp"
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs per timed batch (jobs)")
    parser.add_argument("--record", action="store_true", help="write presets/multigpu_speedups.yaml")
    args = parser.parse_args()
    if args.model is None:
        args.model = "wan2.1-t2v-14b" if args.part == "split" else "wan2.1-t2v-1.3b"
    root = Path(tempfile.mkdtemp(prefix="multigpu-bench-"))
    settings = Settings(outputs_dir=root / "outputs", models_dir=root / "models", offline=True)
    folder = root / "models" / args.model
    first = parse_size(args.sizes.split(",")[0])
    if args.part == "split":
        rows = bench_split(args, settings, folder)
        if args.record:
            record_split(args, rows)
        speedups = job_speedups(rows)
        measured = {}
        for (case, gpus, _, size), value in speedups.items():
            if size == first:
                measured["split", gpus, case] = max(value, measured.get(("split", gpus, case), 0.0))
    else:
        results = bench_jobs(args, settings, folder)
        measured = {("jobs", workers, ""): results[0][1] / seconds for workers, seconds in results[1:]}
    print_goals(args, measured)


if __name__ == "__main__":
    main()
