"""One rank of a split Wan-family request: load the pipeline, apply CFG/context parallel, denoise in lockstep.

The request's task says what runs (:meth:`core.tasks.t2v.WanTask.work`: text or image to video). Every rank
runs the whole pipeline on identical inputs (same seed, same prompt, same pictures) so all hold the same
latents (the conditioning steps the task names come from rank 0: ``core.parallel.agree``); the hooks only
change who computes what inside the transformer. Each rank loads at the memory level
the parent planned (the same on all ranks) and applies the request's speed options and step cache as the
single-GPU runner does (``core.parallel.rank_options`` says what changes). Rank 0 reports progress and writes
the mp4 and its record.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from core.caches import apply_cache
from core.device_models import DeviceModels
from core.job_run import JobRun
from core.jobs import JobCancelledError
from core.lora import PreparedLora, apply_loras, lora_variant
from core.memory.apply import denoisers
from core.memory.levels import LEVELS
from core.model_store import ensure_model
from core.parallel.agree import rank0_results
from core.parallel.cfg_hook import apply_cfg_parallel, remove_cfg_parallel
from core.parallel.config import ParallelConfig
from core.parallel.distributed import build_mesh, enable_context_parallel, init_rank
from core.parallel.rank_options import merge_cache_stats, split_speed_config
from core.parallel.remote_job import RemoteJob
from core.parallel.shared_prompt import components_skipped, shared_prompt
from core.parallel.split_decode import split_decode
from core.pipelines import load_diffusers_pipeline
from core.settings import Settings
from core.speed import SpeedConfig, apply_speed
from core.speed.compile import should_compile
from core.tasks import task_for
from core.tasks.t2v import T2VRequest, WanWork, prepare_request_loras, t2v_fields
from core.tasks.wan_output import save_frames
from weights.registry import ModelCard


@dataclass(frozen=True)
class SplitTask:
    """What every rank of a split job receives: the run ``number``, the job, and how to run it."""

    number: int
    job_id: str
    request: T2VRequest
    config: ParallelConfig
    memory_level: int = 0
    placement: str = ""
    """The planner's decision and reason, for the record."""


class RankJob(RemoteJob):
    """A job whose cancel every rank agrees on at the same step (one tiny all-reduce), so none is left
    waiting in a collective for a rank that already stopped."""

    def check_cancelled(self) -> None:
        flag = torch.tensor([int(self.cancel_requested)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            raise JobCancelledError(self.id)


@contextlib.contextmanager
def cfg_parallel(pipe: Any, config: ParallelConfig, mesh: DeviceMesh | None) -> Iterator[None]:
    """The CFG hook on each transformer for one job, registered last so it is outermost (the step cache's
    counters inside it then see only the branch this rank computes)."""
    if config.cfg == 1 or mesh is None:
        yield
        return
    cfg_mesh = mesh["cfg"]
    for transformer in denoisers(pipe):
        apply_cfg_parallel(transformer, cfg_mesh.get_group(), cfg_mesh.get_local_rank())
    try:
        yield
    finally:
        for transformer in denoisers(pipe):
            remove_cfg_parallel(transformer)


class RankPipelines:
    """This rank's device (one model at a time, :class:`core.device_models.DeviceModels`) with context
    parallel and speed options applied on load; another model, split, memory level or speed config loads a
    fresh pipeline."""

    def __init__(self, device: torch.device, settings: Settings) -> None:
        self.device = device
        self.settings = settings
        self.models = DeviceModels(device, settings)
        self.mesh: DeviceMesh | None = None
        self.speed: dict[str, Any] = {}
        self.loras: list[dict[str, Any]] = []

    def get(
        self,
        card: ModelCard,
        config: ParallelConfig,
        level: int,
        speed: SpeedConfig,
        loras: tuple[PreparedLora, ...] = (),
        work: WanWork | None = None,
    ) -> Any:
        """The rank's pipeline carrying ``loras`` (loaded before compile, swapped in place later), opened
        as ``work``'s pipeline class (default: the card's own), without the components this rank is handed
        (:func:`core.parallel.shared_prompt.components_skipped`)."""
        folder = ensure_model(card, self.settings)
        hotswap = should_compile(speed.compile, self.device)[0]
        load = partial(self._load, config, speed, loras, hotswap, work.pipeline if work else None)
        variant = (config, speed, work.variant if work else None, lora_variant(loras, hotswap, level))
        pipe = self.models.get(card, folder, level, variant, loader=load)
        self.loras = apply_loras(pipe, loras, card, hotswap)
        return pipe

    def _load(
        self,
        config: ParallelConfig,
        speed: SpeedConfig,
        loras: tuple[PreparedLora, ...],
        hotswap: bool,
        pipeline: str | None,
        card: ModelCard,
        folder: Path,
        device: torch.device,
        level: int,
    ) -> Any:
        without = components_skipped(dist.get_rank())
        models_dir = self.settings.models_dir
        pipe = load_diffusers_pipeline(
            card, folder, device, level, models_dir=models_dir, pipeline=pipeline, without=without
        )
        apply_loras(pipe, loras, card, hotswap)
        self.mesh = build_mesh(config, device)
        if self.mesh is not None and config.context > 1:
            for transformer in denoisers(pipe):
                enable_context_parallel(transformer, config, self.mesh)
        rank_speed, note = split_speed_config(speed, config, device)
        self.speed = apply_speed(pipe, rank_speed, device, models_dir=self.settings.models_dir)
        if note:
            self.speed["attention"]["reason"] += f" ({note})"
        return pipe


def split_record(
    run: JobRun,
    task: SplitTask,
    device: torch.device,
    applied: dict[str, Any],
    work: WanWork,
    stages: dict[str, float],
    decoded: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record the job has on one GPU, plus how the request was split and why; ``stages``: rank 0's
    ``text``, ``denoise`` and ``decode`` seconds (the pipeline's own decode, not streamed: inside
    ``denoise`` unless ``decoded``, what :func:`core.parallel.split_decode.split_decode` did, timed it)."""
    config, level = task.config, task.memory_level
    plan = (
        f"split over {config.describe()}: the whole pipeline on every GPU at memory level {level} "
        f"({LEVELS[level].label}), planned for all ranks alike"
    )
    return run.record(
        task.request.card,
        **t2v_fields(task.request, device, level, plan),
        **(work.fields(run.request) if work.fields else {}),
        **applied,
        decode=split_decode_record(decoded or {}),
        stages=stages,
        dtype=run.dtype,
        **run.measured(),
        status="done",
        parallel=config.to_dict(),
        gpu_plan={"mode": "split", "reason": task.placement},
    )


def run_on_rank(job: RankJob, task: SplitTask, settings: Settings, pipelines: RankPipelines) -> dict | None:
    """Generate on this rank what the request's task gives to run (:meth:`core.tasks.t2v.WanTask.work`);
    rank 0 writes the video and returns the record, the others return None."""
    device = pipelines.device
    worker = RankWorker(settings, device, pipelines.models)
    with JobRun(task.request.task, job, task.request, device) as run:
        request = run.request
        work = task_for(request).work(worker, job, request, None)
        stages: dict[str, float] = {}
        job.report(f"loading model (memory level {task.memory_level})")
        loras = prepare_request_loras(worker, job, request)
        pipe = pipelines.get(request.card, task.config, task.memory_level, request.speed_config, loras, work)
        try:
            with (
                apply_cache(pipe, request.card, request.cache_config) as session,
                cfg_parallel(pipe, task.config, pipelines.mesh),
                rank0_results(pipe, work.rank0_steps),
                shared_prompt(pipe, device),
                split_decode(pipe) as decoded,
            ):
                frames = work.generate(pipe, request, stages=stages)
        finally:
            pipelines.models.after_job()
    every_rank: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every_rank, (session.stats(), getattr(pipe, "text_encoder", None) is not None))
    if dist.get_rank() != 0:
        return None
    applied = {
        "loras": pipelines.loras,
        "speed": pipelines.speed,
        "cache": merge_cache_stats([stats for stats, _ in every_rank]),
        "split_work": split_work(every_rank),
    }
    record = split_record(run, task, device, applied, work, split_stages(stages, decoded), decoded)
    job.report("writing video")
    return save_frames(worker.settings.outputs_dir, request, record, frames)


def split_decode_record(decoded: dict[str, Any]) -> dict[str, Any]:
    """The record's ``decode``: the pipeline's own decode (not streamed), in ``bands`` over the ranks."""
    bands = decoded.get("bands", 1)
    how = f"in {bands} bands over the ranks" if bands > 1 else "whole on every rank"
    reason = f"split over GPUs: the pipeline's own decode, {how}"
    return {"stream": False, "reason": reason, "bands": bands}


def split_work(every_rank: list[tuple[Any, bool]]) -> dict[str, Any]:
    """Which ranks held the text encoder (rank 0 encodes the prompt for all)."""
    return {"text_encoder_ranks": [rank for rank, (_, has_encoder) in enumerate(every_rank) if has_encoder]}


def split_stages(stages: dict[str, float], decoded: dict[str, Any]) -> dict[str, float]:
    """The pipeline call's ``text`` and ``denoise`` seconds, the decode (inside the call on split ranks)
    taken out of ``denoise`` into ``decode``."""
    seconds = decoded.get("seconds")
    if seconds is None or "denoise" not in stages:
        return stages
    return stages | {"denoise": round(stages["denoise"] - seconds, 3), "decode": seconds}


@dataclass(frozen=True)
class RankWorker:
    """A rank as a worker, for saving rank 0's video like the single-GPU task."""

    settings: Settings
    device: torch.device
    models: DeviceModels


def rank_main(
    rank: int,
    world_size: int,
    port: int,
    settings: Settings,
    inbox: Any,
    events: Any,
    cancel_value: Any,
    rank_setup: Any = None,
    oom_value: Any = None,
) -> None:
    """A rank process: join the group, then serve :class:`SplitTask` messages until None.

    An out-of-memory error writes the run's number into ``oom_value`` before the failure is reported: the
    parent then restarts every rank one memory level up (its peers may be waiting in a collective this rank
    will not join, so they cannot agree among themselves)."""
    device = init_rank(rank, world_size, port)
    if rank_setup is not None:
        rank_setup()
    pipelines = RankPipelines(device, settings)
    try:
        while (task := inbox.get()) is not None:
            number = task.number
            job = RankJob(task.job_id, number, task.request, events if rank == 0 else None, cancel_value)
            try:
                record = run_on_rank(job, task, settings, pipelines)
            except JobCancelledError:
                if rank == 0:
                    events.put(("cancelled", number))
            except torch.OutOfMemoryError as error:
                if oom_value is not None:
                    oom_value.value = number
                first_line = str(error).splitlines()[0] if str(error) else "CUDA out of memory"
                events.put(("failed", number, f"rank {rank}: {first_line}"))
            except Exception as exc:  # reported to the parent, which closes the group
                traceback.print_exc()
                events.put(("failed", number, f"rank {rank}: {type(exc).__name__}: {exc}"))
            else:
                if rank == 0:
                    events.put(("done", number, record))
    finally:
        dist.destroy_process_group()
