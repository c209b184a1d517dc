"""One rank of a split request: load the pipeline, apply CFG/context parallel, denoise in lockstep.

Every rank runs the whole pipeline on identical inputs (same seed, same prompt) so all of them hold the same
latents; the hooks only change who computes what inside the transformer. Rank 0 reports progress and writes
the mp4 and its record.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import torch
import torch.distributed as dist

from core.hardware import PeakMemory
from core.jobs import JobCancelledError
from core.outputs import save_output
from core.parallel.cfg_hook import apply_cfg_parallel
from core.parallel.config import ParallelConfig
from core.parallel.distributed import build_mesh, enable_context_parallel, init_rank
from core.parallel.remote_job import RemoteJob
from core.pipelines import free_memory, load_diffusers_pipeline
from core.requests import T2VRequest
from core.settings import Settings
from core.t2v import generate_t2v, t2v_record
from core.video_io import write_video
from weights.registry import ModelCard
from weights.store import ensure_model


class RankJob(RemoteJob):
    """A job whose cancel every rank agrees on at the same step (one tiny all-reduce), so none is left
    waiting in a collective for a rank that already stopped."""

    def check_cancelled(self) -> None:
        flag = torch.tensor([int(self.cancel_requested)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            raise JobCancelledError(self.id)


def apply_parallel(pipe: Any, config: ParallelConfig, device: torch.device) -> None:
    """Context parallel then the CFG hook (outermost) on each transformer of ``pipe``."""
    mesh = build_mesh(config, device)
    for transformer in (pipe.transformer, getattr(pipe, "transformer_2", None)):
        if transformer is None or mesh is None:
            continue
        if config.context > 1:
            enable_context_parallel(transformer, config, mesh)
        if config.cfg == 2:
            apply_cfg_parallel(transformer, mesh["cfg"].get_group(), mesh["cfg"].get_local_rank())


class RankPipelines:
    """Keeps the last pipeline with its parallel hooks; another model or config loads a fresh one."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._key: tuple[str, ParallelConfig] | None = None
        self._pipe: Any = None

    def get(self, card: ModelCard, settings: Settings, config: ParallelConfig) -> Any:
        if self._key != (card.id, config):
            self._key = self._pipe = None
            free_memory(self.device)
            pipe = load_diffusers_pipeline(card, ensure_model(card, settings), self.device)
            apply_parallel(pipe, config, self.device)
            self._key, self._pipe = (card.id, config), pipe
        return self._pipe


def split_record(
    job: RankJob,
    request: T2VRequest,
    config: ParallelConfig,
    device: torch.device,
    time_s: float,
    peak_gb: float,
) -> dict[str, Any]:
    """The record :class:`core.runner.Runner` writes, plus how the request was split.

    Split runs use memory level 0 and plain attention: the request's speed options, step cache and memory
    level are not applied (their keys are None), since a step cache deciding differently on two context
    ranks would leave them in different collectives.
    """
    return t2v_record(
        job.id,
        request,
        device,
        memory_level=0,
        memory_plan=f"split over {config.describe()}: the whole pipeline on every GPU",
        applied={"speed": None, "cache": None},
        time_s=time_s,
        peak_gb=peak_gb,
    ) | {"parallel": config.to_dict()}


def run_on_rank(
    job: RankJob, request: T2VRequest, config: ParallelConfig, settings: Settings, pipelines: RankPipelines
) -> dict[str, Any] | None:
    """Generate on this rank; rank 0 writes the video and returns the record, the others return None."""
    device = pipelines.device
    started = time.perf_counter()
    with PeakMemory(device) as peak:
        job.report("loading model")
        pipe = pipelines.get(request.card, settings, config)
        try:
            frames = generate_t2v(pipe, request, job)
        finally:
            free_memory(device)
    if dist.get_rank() != 0:
        return None
    record = split_record(job, request, config, device, time.perf_counter() - started, peak.peak_gb)
    job.report("writing video")
    return save_output(
        settings.outputs_dir,
        "t2v",
        request.prompt,
        request.seed,
        record,
        lambda path, metadata: write_video(path, frames, request.card.fps, metadata),
    )


def rank_main(
    rank: int,
    world_size: int,
    port: int,
    gpus: tuple[int, ...] | None,
    settings: Settings,
    inbox: Any,
    events: Any,
    cancel_value: Any,
    rank_setup: Any = None,
) -> None:
    """A rank process: join the group, then serve ``(number, job_id, request, config)`` until None."""
    device = init_rank(rank, world_size, port, gpus)
    if rank_setup is not None:
        rank_setup()
    pipelines = RankPipelines(device)
    try:
        while (message := inbox.get()) is not None:
            number, job_id, request, config = message
            job = RankJob(job_id, number, request, events if rank == 0 else None, cancel_value)
            try:
                record = run_on_rank(job, request, config, settings, pipelines)
            except JobCancelledError:
                if rank == 0:
                    events.put(("cancelled", number))
            except Exception:  # reported to the parent, which closes the group
                events.put(("failed", number, f"rank {rank}: {traceback.format_exc()}"))
            else:
                if rank == 0:
                    events.put(("done", number, record))
    finally:
        dist.destroy_process_group()
