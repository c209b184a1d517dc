"""Multi-GPU speed-up: one request split over N GPUs against one GPU, and jobs/hour with a worker per GPU.

``split``: Wan2.1 (random weights of the real shapes, built straight on each GPU) at each size, 81 frames,
CFG; the plain single-GPU :class:`core.runner.Runner` first, then our :class:`core.parallel.split.SplitGroup`
for each split asked for (``cfg,cp`` is the app's default: CFG parallel, then context parallel over the
rest). The DiT step time is taken between the first and the last denoising progress report (the GPU's
steady state: no warm-up, text encoder or VAE in it); the job time (prompt encoding to the written video,
after the model load) and the final latents are compared too. ``jobs``: Wan2.1 1.3B jobs through the app's
:class:`core.parallel.dispatch.GpuDispatcher` (each job on one worker, ``multi_gpu="one"``) with 1 and then
N workers, after one warm-up job per worker. Both use memory level 0, SDPA and no compile or step cache.

    python bench/multigpu.py split --gpus 2 [--sizes 832x480,1280x720 --splits cfg,cp cp]
    python bench/multigpu.py jobs --gpus 2 [--jobs 6 --steps 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_wan import random_runner, random_worker_executor, saved_latents, use_random_weights
from core.jobs import Job, JobQueue, JobStatus
from core.parallel.config import parse_parallel_flag
from core.parallel.dispatch import GpuDispatcher
from core.parallel.split import SplitGroup
from core.settings import Settings
from core.tasks.t2v import T2VRequest


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


def bench_request(args: argparse.Namespace, size: tuple[int, int], seed: int, **fields: Any) -> T2VRequest:
    """A bench request: ``args``' model, frames and steps at ``size``; level 0, SDPA, no compile."""
    return T2VRequest(
        model=args.model,
        prompt=f"a cat walking on a beach, take {seed}",
        frames=args.frames,
        width=size[0],
        height=size[1],
        steps=args.steps,
        seed=seed,
        memory_level="0",
        speed={"attention": "sdpa", "compile": False},
        **fields,
    )


Row = tuple[str, tuple[int, int], float, float, float, dict[str, Any]]
"""Split name, size, DiT s/step, job s, peak GiB and the record."""


def timed_row(run: Any, request: T2VRequest, size: tuple[int, int], name: str = "") -> Row:
    """Run ``request`` through ``run`` and time it: the job time runs from its prompt encoding (after the
    model load) to its record; ``name`` defaults to the split the record names."""
    job = TimedJob(request)
    record = run(job)
    seconds = time.perf_counter() - (job.loaded_at or 0.0)
    name = name or split_name(record["parallel"])
    print(f"{name} {size}: {job.seconds_per_step():.3f} s/step, job {seconds:.1f} s", flush=True)
    return name, size, job.seconds_per_step(), seconds, record["peak_memory_gb"], record


def bench_split(args: argparse.Namespace, settings: Settings, folder: Path) -> None:
    requests = {size: bench_request(args, size, 0) for size in map(parse_size, args.sizes.split(","))}
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    runner = random_runner(settings, device, folder, args.dit)
    rows = [timed_row(runner.execute, request, size, "1 GPU") for size, request in requests.items()]
    plain_records = {size: record for _, size, *_, record in rows}
    runner.models.unload()
    setup = partial(use_random_weights, folder, args.dit)
    with SplitGroup(settings, args.gpus, rank_setup=setup) as group:
        for split in args.splits:
            modes = parse_parallel_flag(split)

            def run_split(job: Job, modes: tuple[str, ...] = modes) -> dict[str, Any]:
                return group.run(job, job.request, modes)

            rows += [timed_row(run_split, request, size) for size, request in requests.items()]
    gpus = describe_gpus(args.gpus)
    print(f"\n{args.model} random weights, {args.frames} frames, {args.steps} steps, CFG, {gpus}")
    print("| split | size | DiT s/step | speed-up | job s | job speed-up | peak GiB | latent max diff, cos |")
    print("|---|---|---|---|---|---|---|---|")
    base = {size: (step, job) for name, size, step, job, _, _ in rows if name == "1 GPU"}
    for name, size, step, job_s, peak, record in rows:
        base_step, base_job = base[size]
        high, cosine = latent_difference(saved_latents(plain_records[size]), saved_latents(record))
        print(
            f"| {name} | {size[0]}x{size[1]} | {step:.3f} | {base_step / step:.2f}x | {job_s:.1f} | "
            f"{base_job / job_s:.2f}x | {peak:.1f} | {high:.2e}, {cosine:.6f} |"
        )


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


def bench_jobs(args: argparse.Namespace, settings: Settings, folder: Path) -> None:
    size = parse_size(args.sizes.split(",")[0])

    def request(seed: int) -> T2VRequest:
        return bench_request(args, size, seed, multi_gpu="one")

    make_executor = partial(random_worker_executor, folder, args.dit)
    results: list[tuple[int, float]] = []
    for workers in sorted({1, args.gpus}):
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
        f"{describe_gpus(args.gpus)}"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("split", "jobs"))
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--model", default=None, help="default: 14B for split, 1.3B for jobs")
    parser.add_argument("--dit", default="", choices=("", "1.3b", "14b", "tiny"), help="DiT shape override")
    parser.add_argument("--sizes", default="832x480", help="WxH list (split); the first one (jobs)")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--steps", type=int, default=None, help="default: 4 (split), 10 (jobs)")
    parser.add_argument("--splits", nargs="+", default=["cfg,cp"], help="split modes to time, e.g. cfg,cp cp")
    parser.add_argument("--jobs", type=int, default=6, help="jobs per timed batch (jobs)")
    args = parser.parse_args()
    if args.model is None:
        args.model = "wan2.1-t2v-14b" if args.part == "split" else "wan2.1-t2v-1.3b"
    if args.steps is None:
        args.steps = 4 if args.part == "split" else 10
    root = Path(tempfile.mkdtemp(prefix="multigpu-bench-"))
    settings = Settings(outputs_dir=root / "outputs", models_dir=root / "models", offline=True)
    folder = root / "models" / args.model
    (bench_split if args.part == "split" else bench_jobs)(args, settings, folder)


if __name__ == "__main__":
    main()
