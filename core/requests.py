"""Validated job requests. Each task has one dataclass; :func:`parse_request` is the only way in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from core.caches import CacheConfig, parse_cache_config
from core.continuation import ContinueRequest
from core.magi.request import TASKS as MAGI_TASKS
from core.magi.request import MagiRequest, is_magi_card, is_magi_model
from core.memory.levels import parse_override
from core.speed import SpeedConfig, parse_speed_config
from core.upscale.request import UpscaleRequest
from core.validation import (
    ConfigError,
    as_choice,
    as_float,
    as_int,
    as_seed,
    as_text,
    from_mapping,
    random_seed,
)
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

    task = "t2v"

    def __post_init__(self) -> None:
        card = get_card(self.model)
        if card.task != "t2v":
            raise ConfigError(f"model {self.model} is not a text-to-video model")
        if is_magi_card(card):
            raise ConfigError(
                f"{card.name} makes whole chunks: send it as a request dict through parse_request "
                "(fields chunks or seconds, window_size, kv_budget; see docs/magi.md)"
            )
        set_ = object.__setattr__
        set_(self, "prompt", as_text("prompt", self.prompt, required=True))
        negative = card.defaults.negative_prompt if self.negative_prompt is None else self.negative_prompt
        set_(self, "negative_prompt", as_text("negative prompt", negative))
        preset = card.resolution(card.defaults.resolution)
        width = as_int(
            "width", preset.width if self.width is None else self.width, low=card.size_multiple, high=4096
        )
        height = as_int(
            "height", preset.height if self.height is None else self.height, low=card.size_multiple, high=4096
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
            as_int("steps", card.defaults.steps if self.steps is None else self.steps, low=1, high=200),
        )
        guidance = card.defaults.guidance if self.guidance is None else self.guidance
        set_(self, "guidance", as_float("guidance", guidance, low=0.0, high=30.0))
        guidance_2 = self.guidance_2 if self.guidance_2 is not None else card.defaults.guidance_2
        if guidance_2 is not None:
            set_(self, "guidance_2", as_float("guidance 2", guidance_2, low=0.0, high=30.0))
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

    def with_seed(self) -> T2VRequest:
        """This request with a concrete seed (a random one when ``seed`` is -1)."""
        return self if self.seed >= 0 else replace(self, seed=random_seed())

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **asdict(self)}


Request = T2VRequest | ContinueRequest | UpscaleRequest | MagiRequest
REQUEST_TYPES: dict[str, type[Request]] = {
    "t2v": T2VRequest,
    "continue": ContinueRequest,
    "upscale": UpscaleRequest,
}


def request_types() -> dict[str, type]:
    """Every task's request type; the chain recipe composes the others, so it is imported here, late."""
    from core.chain import ChainRequest

    return REQUEST_TYPES | {"chain": ChainRequest}


def parse_request(data: dict[str, Any]) -> Request:
    """Turn a dict from the UI, API or a file into a validated request; ``task`` picks the type, and a
    MAGI-1 model (text to video or continue) a :class:`MagiRequest`."""
    data = dict(data)
    task = data.pop("task", "t2v")
    if task in MAGI_TASKS and is_magi_model(data.get("model")):
        return from_mapping(MagiRequest, data | {"task": task}, where=f"MAGI-1 {task} request")
    types = request_types()
    if task not in types:
        raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(types)}")
    return from_mapping(types[task], data, where=f"{task} request")
