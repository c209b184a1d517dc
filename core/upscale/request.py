"""The validated upscale request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from core.interpolate import check_interpolator
from core.upscale.config import VARIANTS
from core.upscale.sizing import ENGINE_ALIGN, FITS, plan_size
from core.validation import ConfigError, as_choice, as_int, as_seed, as_text, random_seed
from core.video_input import stream_info
from weights.registry import ModelCard, get_card


def upright_size(video: Path) -> tuple[int, int]:
    """The video's width and height as shown (a phone clip's rotation applied); ConfigError if unreadable."""
    width, height, _, _, rotation = stream_info(video)
    return (height, width) if rotation in (90, 270) else (width, height)


SCALES = (2, 4)
ENGINES = {"FlashVSR": "flashvsr", "ESRGAN": "esrgan"}
"""Card ``pipeline`` -> how the job runs it: FlashVSR, or a Real-ESRGAN-class network frame by frame."""


@dataclass(frozen=True)
class UpscaleRequest:
    """Upscale ``video`` by ``scale`` with a FlashVSR or Real-ESRGAN model card (``variant`` applies to
    FlashVSR only). ``max_input_width`` None or 0 keeps the input width; ``quality`` 1-10 sets the
    encoder's CRF/CQ; ``seed=-1`` asks for a random seed."""

    model: str
    video: str
    scale: int = 4
    variant: str = "tiny-long"
    max_input_width: int | None = None
    quality: int = 8
    seed: int = 0
    pipeline_gpus: int = 1
    """2: the DiT's blocks split over two GPUs (``core.upscale.pipeline_split``)."""
    fit: str = "crop"
    """How the scaled frame meets FlashVSR's 128-pixel multiple: ``crop`` (centre) or ``pad`` (nothing of
    the picture lost; ``core.upscale.sizing``)."""
    interpolate: str | None = None
    """A frame interpolation method (``core.interpolate``) run on the result: frames and fps doubled."""

    task = "upscale"

    def __post_init__(self) -> None:
        card = get_card(self.model)
        if card.task != "upscale" or card.pipeline not in ENGINES:
            raise ConfigError(f"model {self.model} is not an upscaling model")
        set_ = object.__setattr__
        raw = str(self.video) if isinstance(self.video, Path) else self.video
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ConfigError("choose the video to upscale")
        video = as_text("video", raw, required=True)
        if not Path(video).is_file():
            raise ConfigError(
                f"video {video!r} does not exist (an earlier upload may have been cleared); pick it again"
            )
        set_(self, "video", video)
        scale = as_int("scale", self.scale)
        if scale not in SCALES:
            raise ConfigError(f"scale must be 2 or 4, got {scale}")
        native = card.extra.get("scale", max(SCALES))
        if scale > native:
            raise ConfigError(f"{card.name} upscales x{native} at most; choose x{native} or another model")
        set_(self, "scale", scale)
        set_(self, "variant", as_choice("variant", self.variant, VARIANTS))
        if self.max_input_width in (None, 0):
            set_(self, "max_input_width", None)
        else:
            set_(self, "max_input_width", as_int("max input width", self.max_input_width, low=32, high=8192))
        set_(self, "quality", as_int("quality", self.quality, low=1, high=10))
        set_(self, "fit", as_choice("fit", self.fit, FITS))
        set_(self, "seed", as_seed(self.seed))
        set_(self, "pipeline_gpus", as_int("pipeline gpus", self.pipeline_gpus, low=1, high=2))
        width, height = upright_size(Path(video))
        plan_size(width, height, scale, self.max_input_width, ENGINE_ALIGN[ENGINES[card.pipeline]])
        if self.interpolate:
            check_interpolator(self.interpolate)
        else:
            set_(self, "interpolate", None)
        if self.pipeline_gpus == 2 and ENGINES[card.pipeline] != "flashvsr":
            raise ConfigError(f"pipeline gpus 2 splits FlashVSR's DiT; {card.name} runs on one GPU")

    @property
    def card(self) -> ModelCard:
        return get_card(self.model)

    @property
    def engine(self) -> str:
        """``flashvsr`` or ``esrgan``."""
        return ENGINES[self.card.pipeline]

    def with_seed(self) -> UpscaleRequest:
        """This request with a concrete seed (a random one when ``seed`` is -1)."""
        return self if self.seed >= 0 else replace(self, seed=random_seed())

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **asdict(self)}
