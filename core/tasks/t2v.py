"""Text to video: the request, its generation through a Wan pipeline with progress and cancel per step, and
the task that runs it on a worker."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.caches import CacheConfig, apply_cache, parse_cache_config
from core.device_models import Loader, Worker
from core.job_run import JobRun
from core.jobs import Job
from core.lora import (
    LoraSpec,
    PreparedLora,
    apply_loras,
    lora_variant,
    parse_loras,
    prepare_loras,
    resolve_lora,
)
from core.magi.request import is_magi_card
from core.memory.levels import parse_override
from core.pipelines import load_diffusers_pipeline, set_flow_shift
from core.preview import LatentPreview
from core.speed import SpeedConfig, apply_speed, parse_speed_config
from core.speed.compile import should_compile
from core.tasks.few_step import (
    few_step_record,
    few_step_settings,
    first_step_cfg,
    use_few_step_scheduler,
    with_preset_loras,
)
from core.tasks.registry import Task, register
from core.tasks.wan_output import DecodedVideo, decode_to_video, save_decoded, stage_clock
from core.validation import ConfigError, as_choice, as_float, as_int, as_seed, as_text, random_seed
from weights.registry import ModelCard, get_card

MULTI_GPU_CHOICES = ("auto", "one", "split")


def snap_frames(frames: int, card: ModelCard) -> int:
    """The nearest valid frame count (4k+1, within the model's limit) to ``frames``."""
    frames = max(1, min(int(frames), card.max_frames))
    return max(1, min(card.max_frames - (card.max_frames - 1) % 4, 4 * round((frames - 1) / 4) + 1))


@dataclass(frozen=True)
class T2VRequest:
    """A text-to-video job, validated on creation.

    None takes the model card's default; ``seed=-1`` asks for a random seed.
    """

    model: str
    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    flow_shift: float | None = None
    seed: int = -1
    memory_level: str = "auto"
    cache: dict[str, Any] | None = None
    speed: dict[str, Any] | None = None
    multi_gpu: str = "auto"
    """With several GPUs: "auto" (the planner decides), "one" GPU, or "split" over the idle GPUs."""
    loras: tuple[LoraSpec, ...] | None = None
    """User LoRAs: entries {name (a file in the loras folder) or repo + name or url, strength, expert}."""
    few_step: bool = False
    """The card's few-step mode: its steps, CFG, shift and scheduler as defaults, and its step-distill
    LoRAs (fused) before the user's own unless ``loras`` lists them."""
    first_step_guidance: float | None = None
    """CFG on the first step only at this scale (> 1), CFG 1 after it; for few-step runs at CFG 1."""

    task = "t2v"
    model_kind = "a text-to-video"

    def __post_init__(self) -> None:
        card = get_card(self.model)
        if not card.serves(self.task):
            raise ConfigError(f"model {self.model} is not {self.model_kind} model")
        if is_magi_card(card):
            raise ConfigError(
                f"{card.name} makes whole chunks: send it as a request dict through parse_request "
                "(fields chunks or seconds, window_size, kv_budget; see docs/magi.md)"
            )
        set_ = object.__setattr__
        fast = few_step_settings(card, self.few_step)
        set_(self, "few_step", fast is not None)
        loras = parse_loras(list(self.loras) if isinstance(self.loras, tuple) else self.loras)
        set_(self, "loras", loras if fast is None else with_preset_loras(fast, loras))
        set_(self, "prompt", as_text("prompt", self.prompt, required=True))
        negative = card.defaults.negative_prompt if self.negative_prompt is None else self.negative_prompt
        set_(self, "negative_prompt", as_text("negative prompt", negative))
        preset = card.resolution(card.defaults.resolution)
        side = min(4096, card.architecture().max_side)  # the DiT's rotary table covers this many pixels
        width = as_int(
            "width", preset.width if self.width is None else self.width, low=card.size_multiple, high=side
        )
        height = as_int(
            "height", preset.height if self.height is None else self.height, low=card.size_multiple, high=side
        )
        for name, value in (("width", width), ("height", height)):
            if value % card.size_multiple:
                raise ConfigError(
                    f"{name} {value} is not divisible by {card.size_multiple} (needed by {card.name})"
                )
        set_(self, "width", width)
        set_(self, "height", height)
        frames = as_int(
            "frames",
            card.defaults.frames if self.frames is None else self.frames,
            low=1,
            high=card.max_frames,
        )
        if (frames - 1) % 4:
            raise ConfigError(f"frames must be 4k+1 (e.g. {snap_frames(frames, card)}), got {frames}")
        set_(self, "frames", frames)
        set_(
            self,
            "steps",
            as_int(
                "steps", (fast or card.defaults).steps if self.steps is None else self.steps, low=1, high=200
            ),
        )
        guidance = (fast or card.defaults).guidance if self.guidance is None else self.guidance
        set_(self, "guidance", as_float("guidance", guidance, low=0.0, high=30.0))
        guidance_2 = self.guidance_2 if self.guidance_2 is not None else card.defaults.guidance_2
        if self.guidance_2 is None and fast is not None and guidance_2 is not None:
            guidance_2 = fast.guidance
        if guidance_2 is not None:
            set_(self, "guidance_2", as_float("guidance 2", guidance_2, low=0.0, high=30.0))
        if self.flow_shift is None and fast is not None:
            set_(self, "flow_shift", fast.flow_shift)
        if self.first_step_guidance is not None:
            set_(
                self,
                "first_step_guidance",
                as_float("first step guidance", self.first_step_guidance, low=1.0, high=30.0),
            )
        if self.flow_shift is not None:
            set_(self, "flow_shift", as_float("flow shift", self.flow_shift, low=0.0, high=100.0))
        set_(self, "seed", as_seed(self.seed))
        level = parse_override(self.memory_level)
        set_(self, "memory_level", "auto" if level is None else str(level))
        parse_cache_config(self.cache, card)
        parse_speed_config(self.speed)
        set_(self, "multi_gpu", as_choice("multi_gpu", self.multi_gpu, MULTI_GPU_CHOICES))

    @property
    def cache_config(self) -> CacheConfig:
        """The step cache for this run, its preset resolved to a threshold for this model."""
        return parse_cache_config(self.cache, self.card)

    @property
    def speed_config(self) -> SpeedConfig:
        """Attention backend, compile and fp8 options for this run (lossless defaults)."""
        return parse_speed_config(self.speed)

    @property
    def card(self) -> ModelCard:
        return get_card(self.model)

    def resolved_flow_shift(self) -> float:
        """The asked flow shift, else the preset's for this size, else 5.0 from 720p up and 3.0 below."""
        if self.flow_shift is not None:
            return self.flow_shift
        for res in self.card.resolutions:
            if (res.width, res.height) == (self.width, self.height) and res.flow_shift is not None:
                return res.flow_shift
        return 5.0 if self.width * self.height >= 1280 * 720 else 3.0

    def frame_choices(self) -> range:
        """Every frame count this model can make (4k+1 up to its limit)."""
        return range(1, self.card.max_frames + 1, 4)

    def with_seed(self) -> T2VRequest:
        """This request with a concrete seed (a random one when ``seed`` is -1)."""
        return self if self.seed >= 0 else replace(self, seed=random_seed())

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **asdict(self), "loras": [lora.to_dict() for lora in self.loras or ()]}


def step_callback(job: Job, total: int, preview: LatentPreview | None = None):
    """A ``callback_on_step_end`` that reports step i/N, stops the run when the job is cancelled and
    feeds ``preview`` the latents (read only)."""

    def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        job.report("denoising", index + 1, total)
        job.check_cancelled()
        if preview is not None and index + 1 < total:
            preview.on_step(index + 1, tensors)
        if index + 1 == total:
            job.report("decoding video")
        return {}

    return on_step_end


def generate_t2v(
    pipe: Any,
    request: T2VRequest,
    job: Job,
    preview: LatentPreview | None = None,
    *,
    latents: bool = False,
    stages: dict[str, float] | None = None,
    **inputs: Any,
) -> Any:
    """Run ``request`` (with a concrete seed) and return float frames in [0, 1] shaped (T, H, W, 3), with a
    live ``preview`` when given; ``latents``: return the denoised latents (1, C, F, H, W) undecoded
    instead; ``stages`` gets the ``text`` and ``denoise`` seconds; ``inputs``: further pipeline arguments
    (image to video's images)."""
    generator = torch.Generator("cpu").manual_seed(request.seed)
    shift = request.resolved_flow_shift()
    use_few_step_scheduler(pipe, request.card, shift, request.few_step, request.steps, generator)
    set_flow_shift(pipe, shift)
    guidance = request.first_step_guidance or request.guidance
    kwargs: dict[str, Any] = dict(inputs)
    if getattr(pipe, "transformer_2", None) is not None and request.guidance_2 is not None:
        kwargs["guidance_scale_2"] = request.guidance_2
    job.report("encoding prompt")
    with stage_clock(pipe, {} if stages is None else stages, pipe.device):
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            height=request.height,
            width=request.width,
            num_frames=request.frames,
            num_inference_steps=request.steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="latent" if latents else "np",
            callback_on_step_end=first_step_cfg(step_callback(job, request.steps, preview), request),
            **kwargs,
        )
    return output.frames if latents else np.asarray(output.frames[0])


def prepare_request_loras(worker: Worker, job: Job, request: Any) -> tuple[PreparedLora, ...]:
    """The request's LoRAs from the loras folder (fetched first when they name a Hub file or URL), read
    and converted for its model; any Wan-family request with a ``loras`` field (text or image to video)."""
    resolved = []
    for spec in request.loras or ():
        job.report(f"preparing LoRA {spec.name}")
        resolved.append(
            resolve_lora(
                spec,
                worker.settings.loras_dir,
                on_progress=lambda p: job.report(
                    "downloading LoRA", p.bytes_done, p.bytes_total, p.describe()
                ),
                should_cancel=lambda: job.cancel_requested,
            )
        )
    job.check_cancelled()
    return prepare_loras(tuple(resolved), request.card)


def t2v_fields(request: T2VRequest, device: torch.device, level: int, plan: str) -> dict[str, Any]:
    """The record's text-to-video fields (after the common ones), for one GPU or a split."""
    return {
        "few_step": few_step_record(request),
        "width": request.width,
        "height": request.height,
        "frames": request.frames,
        "fps": request.card.fps,
        "flow_shift": request.resolved_flow_shift(),
        "device": str(device),
        "memory_level": level,
        "memory_plan": plan,
    }


def pipeline_loader(pipeline: str | None, models_dir: Path | None = None) -> Loader | None:
    """A loader opening a card's folder as the diffusers class ``pipeline``; None (the device's own
    loader: the card's pipeline) when ``pipeline`` is None."""
    if pipeline is None:
        return None
    return partial(load_diffusers_pipeline, models_dir=models_dir, pipeline=pipeline)


def run_wan(worker: Worker, job: Job, request: T2VRequest, work: WanWork) -> dict[str, Any]:
    """Run a Wan-family ``request`` on one device as ``work`` says (see :class:`WanWork`): concrete seed,
    speed options and step cache on the pipeline, ``work.generate(pipe, request, latents=True,
    stages=stages)`` (the denoised latents; it times ``text`` and ``denoise`` into ``stages``) within the
    memory plan, the latents decoded into the video as the writer encodes it
    (:func:`core.tasks.wan_output.decode_to_video`), then the record (with ``work.fields`` of the seeded
    request, the ``decode`` that ran and the ``stages``) embedded. Text and image to video share it."""
    applied: dict[str, Any] = {}
    stages: dict[str, float] = {}
    with JobRun(request.task, job, request, worker.device) as run:
        request = run.request
        prepared = prepare_request_loras(worker, job, request)
        hotswap = should_compile(request.speed_config.compile, worker.device)[0]

        def on_pipe(pipe: Any) -> DecodedVideo:
            applied["loras"] = apply_loras(pipe, prepared, request.card, hotswap)
            applied["speed"] = apply_speed(
                pipe,
                request.speed_config,
                worker.device,
                models_dir=worker.settings.models_dir,
                report=job.report,
            )
            with apply_cache(pipe, request.card, request.cache_config) as session:
                latents = work.generate(pipe, request, latents=True, stages=stages)
            applied["cache"] = session.stats()
            outputs = worker.settings.outputs_dir
            return decode_to_video(job, outputs, request, pipe.vae, latents, request.speed_config, stages)

        loaded = request.speed_config.loaded_variant if work.variant is None else work.variant
        decoded, plan, level = worker.models.run_planned(
            job,
            request.card,
            (request.width, request.height, request.frames),
            request.memory_level,
            on_pipe,
            variant=lambda level: (loaded, lora_variant(prepared, hotswap, level)),
            loader=pipeline_loader(work.pipeline, worker.settings.models_dir),
        )
    record = run.record(
        request.card,
        **t2v_fields(request, worker.device, level, plan.reason),
        **(work.fields(request) if work.fields else {}),
        **applied,
        decode=decoded.record(),
        stages=stages,
        dtype=run.dtype,
        **run.measured(),
        status=decoded.status,
    )
    job.report("writing video")
    return save_decoded(decoded, record, request.prompt)


@dataclass(frozen=True)
class WanWork:
    """What a Wan-family task runs on a loaded pipeline, on one device or on every rank of a split:
    ``generate(pipe, seeded_request, latents=..., stages=...)`` (frames; with ``latents=True`` the denoised
    latents for the streamed decode, ``text`` and ``denoise`` timed into ``stages``), the diffusers class
    the card's folder opens as (``pipeline``) and the loaded ``variant`` (None: the card's own), the
    record's extra ``fields`` of the seeded request, and the pipeline methods whose results a split's
    ranks take from rank 0 (``rank0_steps``: the conditioning every rank must start from alike)."""

    generate: Callable[..., Any]
    pipeline: str | None = None
    variant: Hashable = None
    fields: Callable[[T2VRequest], dict[str, Any]] | None = None
    rank0_steps: tuple[str, ...] = ()


class WanTask(Task):
    """A Wan-family task: :meth:`work` says what runs; one device runs it through :func:`run_wan`, a split's
    ranks (``core.parallel.split_rank``) run the same work in lockstep."""

    splittable = True

    def work(self, worker: Worker, job: Job, request: Any, preview: LatentPreview | None) -> WanWork:
        """What ``request`` runs on ``worker`` (a live ``preview`` on one device; None on split ranks)."""
        raise NotImplementedError

    def run(self, worker: Worker, job: Job, request: Any) -> dict[str, Any]:
        preview = LatentPreview.for_run(worker.settings, job, request.card)
        return run_wan(worker, job, request, self.work(worker, job, request, preview))


@register
class T2VTask(WanTask):
    """Text to video with a Wan-family diffusers pipeline on one device (or split by the dispatcher)."""

    name = "t2v"
    request_type = T2VRequest

    def work(self, worker: Worker, job: Job, request: T2VRequest, preview: LatentPreview | None) -> WanWork:
        return WanWork(lambda pipe, seeded, **decode: generate_t2v(pipe, seeded, job, preview, **decode))
