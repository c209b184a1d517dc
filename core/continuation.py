"""The video-continuation request: extend an input clip with a SkyReels-V2 Diffusion Forcing model.

Frame counts follow the model: the VAE packs 4 frames per latent frame, so the overlap and the window
(``base_num_frames``) are 4k+1 frames and the added frames a multiple of 4 (of ``4 * causal_block_size``,
so every window splits into whole causal blocks). ``0`` or ``-1`` in a field means "the model's default".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from core.image_input import image_size
from core.memory.levels import parse_override
from core.validation import ConfigError, as_float, as_int, as_seed, as_text, random_seed
from core.video_input import VIDEO_SUFFIXES
from weights.registry import ModelCard, get_card

TEMPORAL_FACTOR = 4
DEFAULT_SECONDS = 4.0
CACHE_METHODS = ("flowcache",)
CACHE_PRESETS = {"fast": 0.1, "faster": 0.15}  # FlowCache's SkyReels-V2 "slow" and "fast" thresholds

FIELD_HELP: dict[str, str] = {
    "model": "SkyReels-V2 Diffusion Forcing model that writes the continuation.",
    "video": "The clip to extend (mp4, mov, mkv, webm, avi, ts, m2ts); or give a start image instead.",
    "image": "A still picture to start from instead of a clip (png, jpg, webp...): the video begins at it.",
    "prompt": "What happens next.",
    "negative_prompt": "What to avoid; empty uses the model's default.",
    "add_frames": "Frames to add (rounded up to a multiple of 4); 0 uses the seconds field.",
    "seconds": "Seconds to add when frames to add is 0.",
    "overlap_history": "Frames of the clip's end the model sees (4k+1, e.g. 17 or 37); more keeps motion "
    "steadier.",
    "ar_step": "0: all new frames denoise together (fast). 5: later chunks lag behind earlier ones (slower, "
    "often more consistent).",
    "causal_block_size": "Latent frames per causal chunk; 0 picks 1 when ar_step is 0, else 5.",
    "base_num_frames": "Frames per window (97 for 540P, 121 for 720P); longer additions go window by window.",
    "addnoise_condition": "Noise added to the conditioning frames (about 20 smooths joins; above 50 drifts).",
    "steps": "Denoising steps per window; more is slower and usually cleaner.",
    "guidance": "How strongly to follow the prompt.",
    "shift": "Flow shift of the noise schedule; empty uses the resolution's value.",
    "seed": "Random seed; -1 picks one.",
    "continuation_only": "Save only the new frames instead of the clip followed by them.",
    "cache": "Speed-up by reusing chunks between steps: {'preset': 'fast' | 'faster'} or "
    "{'method': 'flowcache', 'threshold': 0.1, 'warmup': 5}; threshold 0 computes everything.",
    "memory_level": "'auto' or 0-6: how hard to save GPU memory (higher is slower).",
}


def latent_frames(frames: int) -> int:
    """Latent frames the VAE makes of ``frames`` video frames (4k+1 -> k+1)."""
    return (frames - 1) // TEMPORAL_FACTOR + 1


def whole_blocks(frames: int, blocks: int) -> int:
    """The largest 4k+1 frame count not above ``frames`` whose latent frames split into ``blocks``-sized
    causal blocks (at least one block)."""
    latents = max(blocks, latent_frames(frames) - latent_frames(frames) % blocks)
    return TEMPORAL_FACTOR * (latents - 1) + 1


def _check_4k1(name: str, value: int, blocks: int) -> None:
    if (value - 1) % TEMPORAL_FACTOR:
        raise ConfigError(f"{name} must be 4k+1 frames (e.g. {4 * round((value - 1) / 4) + 1}), got {value}")
    if latent_frames(value) % blocks:
        below = whole_blocks(value, blocks)
        above = below + TEMPORAL_FACTOR * blocks
        raise ConfigError(
            f"{name} {value} is {latent_frames(value)} latent frames, not a whole number of causal blocks of "
            f"{blocks}; use {below} or {above}"
        )


def checked_video_path(video: Any) -> str:
    """The input video's path, checked to be an existing file of a video type."""
    text = as_text("video", video, required=True)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"input video not found: {text}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(f"{path.name}: unsupported file type; use one of {', '.join(VIDEO_SUFFIXES)}")
    return text


def checked_start(video: Any, image: Any) -> tuple[str, str | None]:
    """The checked ``(video, image)`` a continuation starts from: exactly one of a clip or a still picture
    (the other comes back empty / None)."""
    video_text, image_text = (str(value or "").strip() for value in (video, image))
    if video_text and image_text:
        raise ConfigError("Give a clip to extend or a start image, not both: clear one of them.")
    if not video_text and not image_text:
        raise ConfigError("Choose a clip to extend or a start image.")
    if image_text:
        image_size(image_text)  # a readable picture, else the reason
        return "", image_text
    return checked_video_path(video_text), None


@dataclass(frozen=True)
class ContinueRequest:
    """A video-continuation job. Validated on creation; ``seed=-1`` asks for a random seed."""

    model: str
    video: str
    prompt: str
    negative_prompt: str | None = None
    add_frames: int = 0
    seconds: float = 0.0
    overlap_history: int = 0
    ar_step: int = 0
    causal_block_size: int = 0
    base_num_frames: int = 0
    addnoise_condition: float = -1.0
    steps: int = 0
    guidance: float = -1.0
    shift: float | None = None
    seed: int = -1
    continuation_only: bool = False
    cache: dict[str, Any] | None = None
    memory_level: str = "auto"
    image: str | None = None
    """A still picture to start from instead of ``video`` (SkyReels-V2 DF image to video)."""

    task = "continue"

    def __post_init__(self) -> None:
        card = get_card(self.model)
        if not card.serves("continue"):
            raise ConfigError(f"model {self.model} cannot continue videos (it is a {card.task} model)")
        if card.pipeline == "Magi1":
            raise ConfigError(
                f"{card.name} continues in whole chunks: send it as a request dict through parse_request "
                "(fields chunks or seconds, window_size, kv_budget; see docs/magi.md)"
            )
        set_ = object.__setattr__
        video, image = checked_start(self.video, self.image)
        set_(self, "video", video)
        set_(self, "image", image)
        set_(self, "prompt", as_text("prompt", self.prompt, required=True))
        negative = card.defaults.negative_prompt if self.negative_prompt is None else self.negative_prompt
        set_(self, "negative_prompt", as_text("negative prompt", negative))
        ar_step = as_int("ar step", self.ar_step, low=0, high=50)
        blocks = as_int("causal block size", self.causal_block_size or (5 if ar_step else 1), low=1, high=64)
        set_(self, "ar_step", ar_step)
        set_(self, "causal_block_size", blocks)
        default_base = whole_blocks(card.defaults.frames, blocks)
        base = as_int("base frames", self.base_num_frames or default_base, low=5, high=1025)
        _check_4k1("base frames", base, blocks)
        default_overlap = whole_blocks(card.extra.get("overlap_history", 17), blocks)
        overlap = as_int("overlap", self.overlap_history or default_overlap, low=1)
        _check_4k1("overlap", overlap, blocks)
        if overlap >= base:
            raise ConfigError(f"overlap ({overlap} frames) must be shorter than the window ({base} frames)")
        set_(self, "base_num_frames", base)
        set_(self, "overlap_history", overlap)
        set_(self, "seconds", as_float("seconds", self.seconds, low=0.0, high=3600.0))
        wanted = self.add_frames or round((self.seconds or DEFAULT_SECONDS) * card.fps)
        wanted = as_int("frames to add", wanted, low=1, high=card.max_frames)
        step = TEMPORAL_FACTOR * blocks
        most = card.max_frames - card.max_frames % step
        set_(self, "add_frames", min(step * math.ceil(wanted / step), most))
        noise = self.addnoise_condition
        if noise == -1.0:
            noise = card.extra.get("addnoise_condition", 20)
        set_(self, "addnoise_condition", as_float("added noise", noise, low=0.0, high=60.0))
        set_(self, "steps", as_int("steps", self.steps or card.defaults.steps, low=1, high=200))
        guidance = card.defaults.guidance if self.guidance == -1.0 else self.guidance
        set_(self, "guidance", as_float("guidance", guidance, low=0.0, high=30.0))
        if self.shift is not None:
            set_(self, "shift", as_float("shift", self.shift, low=0.0, high=100.0))
        set_(self, "seed", as_seed(self.seed))
        if not isinstance(self.continuation_only, bool):
            raise ConfigError(f"continuation only must be true or false, got {self.continuation_only!r}")
        set_(self, "cache", _checked_cache(self.cache))
        level = parse_override(self.memory_level)
        set_(self, "memory_level", "auto" if level is None else str(level))

    @property
    def card(self) -> ModelCard:
        return get_card(self.model)

    def resolved_shift(self, width: int, height: int) -> float:
        """The asked shift, else the preset's for this size, else 8.0 (SkyReels-V2 DF's default)."""
        if self.shift is not None:
            return self.shift
        for res in self.card.resolutions:
            if (res.width, res.height) == (width, height) and res.flow_shift is not None:
                return res.flow_shift
        return 8.0

    starts_from = "overlap"
    """What of a clip a continuation starts from (its :attr:`min_input_frames`), for messages."""

    @property
    def min_input_frames(self) -> int:
        """The fewest frames of a clip this continues from: the overlap."""
        return self.overlap_history

    def with_seed(self) -> ContinueRequest:
        """This request with a concrete seed (a random one when ``seed`` is -1)."""
        return self if self.seed >= 0 else replace(self, seed=random_seed())

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **asdict(self)}


def _checked_cache(cache: Any) -> dict[str, Any] | None:
    """``None`` (no cache) or ``{"method": "flowcache", "threshold": float, "warmup": int}``.

    Accepts the T2V tab's shapes too: ``{"preset": "off" | "fast" | "faster"}`` or ``{"method": ...,
    "threshold": ...}``; an explicit threshold wins over the preset, and method "auto" means flowcache."""
    if not cache:
        return None
    if not isinstance(cache, dict):
        raise ConfigError(f"cache must be a mapping like {{'preset': 'fast'}}, got {cache!r}")
    unknown = sorted(set(cache) - {"method", "preset", "threshold", "warmup"})
    if unknown:
        known = "method, preset, threshold, warmup"
        raise ConfigError(f"cache: unknown field(s) {', '.join(unknown)}; known: {known}")
    method = cache.get("method") or "auto"
    if method == "none":
        return None
    if method not in ("auto", *CACHE_METHODS):
        choices = ", ".join(CACHE_METHODS)
        raise ConfigError(f"cache method must be one of {choices} for continuation, got {method!r}")
    threshold = cache.get("threshold")
    if threshold is None:
        preset = str(cache.get("preset") or "fast").lower()
        if preset == "off":
            return None
        if preset not in CACHE_PRESETS:
            raise ConfigError(f"cache preset must be one of off, {', '.join(CACHE_PRESETS)}; got {preset!r}")
        threshold = CACHE_PRESETS[preset]
    return {
        "method": "flowcache",
        "threshold": as_float("cache threshold", threshold, low=0.0, high=10.0),
        "warmup": as_int("cache warmup", cache.get("warmup", 5), low=0, high=200),
    }
