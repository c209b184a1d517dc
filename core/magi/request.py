"""The MAGI-1 job request: text to video, or continuing a clip, in whole 24-frame chunks.

:func:`core.tasks.parse_request` builds a :class:`MagiRequest` (instead of the Wan / SkyReels requests)
for any ``t2v`` or ``continue`` request whose model card has ``pipeline: Magi1``. Length is asked as
``chunks``, ``frames`` (a multiple of the chunk) or ``seconds`` (rounded up to whole chunks); 0 everywhere
takes the card's default. The distilled models run only the published step counts and guidance 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from core.continuation import checked_start
from core.magi.caching import build_magi_cache
from core.magi.config import VARIANTS
from core.magi.schedule import MagiRunConfig
from core.validation import ConfigError, as_choice, as_float, as_int, as_seed, as_text, random_seed
from weights.registry import ModelCard, Resolution, get_card, load_cards

MAGI_PIPELINE = "Magi1"
TASKS = ("t2v", "continue")
MAX_WINDOW = 4
MAX_KV_BUDGET = 10**9

FIELD_HELP: dict[str, str] = {
    "chunks": "Chunks to make; each is 24 frames (1 s at 24 fps).",
    "window_size": "Chunks denoised together (1-4). 4 is the published speed; fewer need less memory.",
    "kv_budget": "Tokens of earlier chunks kept per layer for attention; 0 keeps all (as published).",
}


def default_window(card: ModelCard) -> int:
    """Chunks ``card`` denoises at once unless a request says otherwise (its card, else the published 4)."""
    return card.extra.get("window_size", MAX_WINDOW)


def is_magi_card(card: ModelCard) -> bool:
    return card.pipeline == MAGI_PIPELINE


def is_magi_model(model: Any) -> bool:
    """Whether ``model`` names a known MAGI-1 card (anything else is left to the other requests)."""
    card = load_cards().get(model) if isinstance(model, str) else None
    return card is not None and is_magi_card(card)


def chunk_frames(card: ModelCard) -> int:
    """Video frames per chunk (24 for every published MAGI-1)."""
    return int(card.extra.get("chunk_frames", 24))


def variant(card: ModelCard) -> str:
    """The published variant (``4.5B_distill`` ...): the folder above the DiT weights in the snapshot."""
    name = card.extra.get("variant") or card.extra["dit_subfolder"].rstrip("/").split("/")[-2]
    return as_choice(f"model {card.id}: MAGI-1 variant", name, VARIANTS)


def is_distilled(card: ModelCard) -> bool:
    return bool(card.extra.get("distill", False))


def run_config(card: ModelCard) -> MagiRunConfig:
    """The card's published runtime options (``extra``) as :class:`MagiRunConfig`."""
    extra = card.extra
    schedule = extra.get("t_schedule", {})
    defaults = MagiRunConfig()
    return MagiRunConfig(
        chunk_width=extra.get("chunk_width", defaults.chunk_width),
        schedule=schedule.get("func", defaults.schedule),
        shift=schedule.get("shift", defaults.shift),
        clean_t=extra.get("clean_t", defaults.clean_t),
        noise2clean_kvrange=tuple(extra.get("noise2clean_kvrange", defaults.noise2clean_kvrange)),
        clean_chunk_kvrange=extra.get("clean_chunk_kvrange", defaults.clean_chunk_kvrange),
        cfg_t_range=tuple(extra.get("cfg_t_range", defaults.cfg_t_range)),
        prev_chunk_scales=tuple(extra.get("prev_chunk_scales", defaults.prev_chunk_scales)),
        text_scales=tuple(extra.get("text_scales", defaults.text_scales)),
        shortcut_mode=extra.get("shortcut_mode", defaults.shortcut_mode),
        nearly_clean_threshold=extra.get("distill_nearly_clean_chunk_threshold", 0.3),
        fps=card.fps,
    )


def context_frames(card: ModelCard, clip_frames: int, name: str = "the clip") -> int:
    """Frames of a clip's end a continuation starts from: its last whole chunks, as many as a new chunk
    attends (4 as published); a clip shorter than one chunk cannot be continued."""
    size = chunk_frames(card)
    if clip_frames < size:
        raise ConfigError(
            f"{name} is too short: {clip_frames} frames at {card.fps} fps; MAGI-1 continues from whole "
            f"chunks and needs at least {size} frames ({size / card.fps:g} s)"
        )
    return min(clip_frames // size, run_config(card).reach - 1) * size


def find_resolution(card: ModelCard, text: str) -> Resolution:
    """The card's preset named ``text``, labelled ``text`` or sized ``WIDTHxHEIGHT``."""
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    for res in card.resolutions:
        sized = match is not None and (res.width, res.height) == (int(match[1]), int(match[2]))
        if text in (res.name, res.label) or sized:
            return res
    raise ConfigError(
        f"{card.name} makes {', '.join(r.label for r in card.resolutions)}; got resolution {text!r}"
    )


@dataclass(frozen=True)
class MagiRequest:
    """A MAGI-1 job (``task`` t2v or continue), validated on creation; 0 / -1 / None take the defaults."""

    task: str
    model: str
    prompt: str
    video: str | None = None
    chunks: int = 0
    frames: int = 0
    seconds: float = 0.0
    steps: int = 0
    guidance: float = -1.0
    seed: int = -1
    window_size: int = 0
    resolution: str | None = None
    cache: dict[str, Any] | None = None
    kv_budget: int = 0
    continuation_only: bool = False
    image: str | None = None
    """A continuation's start picture instead of ``video``: a one-frame prefix (MAGI-1's image to video)."""

    def __post_init__(self) -> None:
        as_choice("task", self.task, TASKS)
        card = get_card(self.model)
        if not is_magi_card(card):
            raise ConfigError(f"model {self.model} is not a MAGI-1 model")
        if not card.serves(self.task):
            raise ConfigError(f"model {self.model} does not serve {self.task}")
        set_ = object.__setattr__
        set_(self, "prompt", as_text("prompt", self.prompt, required=True))
        if self.task == "continue":
            video, image = checked_start(self.video, self.image)
            set_(self, "video", video or None)
            set_(self, "image", image)
        elif self.video or self.image:
            raise ConfigError("a text-to-video request takes no input video or image (use task 'continue')")
        set_(self, "chunks", self._checked_chunks(card))
        set_(self, "frames", self.chunks * chunk_frames(card))
        window = self.window_size or default_window(card)
        set_(self, "window_size", as_int("window size", window, low=1, high=MAX_WINDOW))
        set_(self, "steps", self._checked_steps(card))
        set_(self, "guidance", self._checked_guidance(card))
        set_(self, "seed", as_seed(self.seed))
        if self.resolution is not None or self.task == "t2v":
            asked = as_text("resolution", self.resolution) or card.defaults.resolution
            set_(self, "resolution", find_resolution(card, asked).name)
        set_(self, "kv_budget", as_int("KV budget", self.kv_budget, low=0, high=MAX_KV_BUDGET))
        if not isinstance(self.continuation_only, bool):
            raise ConfigError(f"continuation only must be true or false, got {self.continuation_only!r}")
        self.cache_parts()

    def _checked_chunks(self, card: ModelCard) -> int:
        """Chunks from whichever of chunks / frames / seconds is set (they must agree when several are:
        a request read back from its record has all three)."""
        size = chunk_frames(card)
        most = card.max_frames // size
        asked = {}
        if self.chunks:
            asked["chunks"] = as_int("chunks", self.chunks, low=1, high=most)
        if self.frames:
            frames = as_int("frames", self.frames, low=1, high=most * size)
            if frames % size:
                below, above = max(size, frames - frames % size), frames - frames % size + size
                raise ConfigError(
                    f"MAGI-1 makes whole chunks of {size} frames: frames must be a multiple of {size} "
                    f"(e.g. {below} or {above}), got {frames}"
                )
            asked["frames"] = frames // size
        if self.seconds:
            seconds = as_float("seconds", self.seconds, low=0.0, high=most * size / card.fps)
            asked["seconds"] = max(1, math.ceil(round(seconds * card.fps / size, 6)))
        if len(set(asked.values())) > 1:
            said = ", ".join(f"{name} {getattr(self, name)} ({n} chunks)" for name, n in asked.items())
            raise ConfigError(f"give one of chunks, frames or seconds; they disagree: {said}")
        if asked:
            return next(iter(asked.values()))
        return max(1, min(most, card.defaults.frames // size))

    def _checked_steps(self, card: ModelCard) -> int:
        steps = as_int("steps", self.steps or card.defaults.steps, low=1, high=200)
        published = card.extra.get("step_choices")
        if is_distilled(card) and published and steps not in published:
            choices = ", ".join(map(str, published))
            raise ConfigError(f"{card.name} is step-distilled: steps must be one of {choices}, got {steps}")
        run_config(card).check_steps(steps, self.window_size)
        return steps

    def _checked_guidance(self, card: ModelCard) -> float:
        guidance = card.defaults.guidance if self.guidance == -1.0 else self.guidance
        guidance = as_float("guidance", guidance, low=0.0, high=30.0)
        if is_distilled(card) and guidance != 1.0:
            raise ConfigError(
                f"{card.name} is guidance-distilled: guidance must be 1 (as published), got {guidance:g}"
            )
        return guidance

    def cache_parts(self) -> tuple[Any, Any]:
        """The step hooks and KV policy for this run (``core.magi.caching``); (None, None) for neither."""
        return build_magi_cache(self.cache, kv_budget=self.kv_budget)

    @property
    def card(self) -> ModelCard:
        return get_card(self.model)

    @property
    def size(self) -> tuple[int, int] | None:
        """Width and height asked for; None for a continuation that follows its clip's aspect."""
        if self.resolution is None:
            return None
        res = self.card.resolution(self.resolution)
        return res.width, res.height

    @property
    def width(self) -> int | None:
        return None if self.size is None else self.size[0]

    @property
    def height(self) -> int | None:
        return None if self.size is None else self.size[1]

    starts_from = "first chunk"
    """What of a clip a continuation starts from (its :attr:`min_input_frames`), for messages."""

    @property
    def min_input_frames(self) -> int:
        """The fewest frames of a clip this continues from: one whole chunk."""
        return chunk_frames(self.card)

    def frame_choices(self) -> range:
        """Every frame count this model makes: whole chunks up to its limit."""
        size = chunk_frames(self.card)
        return range(size, self.card.max_frames + 1, size)

    def with_seed(self) -> MagiRequest:
        """This request with a concrete seed (a random one when ``seed`` is -1)."""
        return self if self.seed >= 0 else replace(self, seed=random_seed())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
