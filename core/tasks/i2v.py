"""Image to video: the request (a text-to-video request with a start image and, for the models that take
one, an end image) and the task that runs it through diffusers' ``WanImageToVideoPipeline``.

One pipeline serves every image-to-video card: Wan2.1 I2V (its CLIP image encoder embeds the image),
Wan2.1 FLF2V (first and last frame, both embedded), Wan2.2 I2V A14B (two experts, no image encoder) and
Wan2.2 TI2V-5B, whose ``WanPipeline`` folder loads as ``WanImageToVideoPipeline`` with its
``expand_timesteps``: the image's latent replaces the first latent frame. The pictures are read and fitted
to the output size by :mod:`core.image_input`; the run itself is text to video's (:func:`run_wan`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.device_models import Worker
from core.image_input import image_size, prepare_image
from core.jobs import Job
from core.preview import LatentPreview
from core.tasks.registry import register
from core.tasks.t2v import T2VRequest, WanTask, WanWork, generate_t2v
from core.validation import ConfigError
from weights.registry import ModelCard, Resolution, get_card

I2V_PIPELINE = "WanImageToVideoPipeline"
IMAGE_CONDITIONING = ("encode_image", "prepare_latents")
"""``WanImageToVideoPipeline``'s steps that make the image conditioning (CLIP embeddings; the noise with
the image's VAE latents): a split's ranks all take rank 0's results."""
END_IMAGE_MODES = ("required", "optional")
"""A card's ``extra.end_image``: FLF2V needs the last frame, Wan2.2 I2V takes one; absent: none."""


def end_image_mode(card: ModelCard) -> str | None:
    """Whether ``card`` needs ("required"), takes ("optional") or ignores (None) an end image."""
    mode = card.extra.get("end_image")
    return mode if mode in END_IMAGE_MODES else None


def preset_for_image(card: ModelCard, width: int, height: int) -> Resolution:
    """The card's preset of its default size whose shape is nearest the picture's (landscape for a
    landscape photo, portrait for a portrait one)."""
    default = card.resolution(card.defaults.resolution)
    area = default.width * default.height
    same = [r for r in card.resolutions if r.width * r.height == area] or [default]
    aspect = width / height
    return min(same, key=lambda r: abs(math.log(r.width / r.height / aspect)))


@dataclass(frozen=True)
class I2VRequest(T2VRequest):
    """An image-to-video job: a text-to-video request with a start ``image`` (a file path) and an
    ``end_image`` for the models that take one. Without a size, the model's default size in the
    picture's orientation. The pictures are scaled to cover the size and centre-cropped."""

    image: str = ""
    end_image: str | None = None

    task = "i2v"
    model_kind = "an image-to-video"

    def __post_init__(self) -> None:
        card = get_card(self.model)
        set_ = object.__setattr__
        set_(self, "image", str(self.image or "").strip())
        if not self.image:
            raise ConfigError("Choose a start image.")
        width, height = image_size(self.image)
        end = str(self.end_image or "").strip() or None
        mode = end_image_mode(card)
        if end and mode is None:
            raise ConfigError(
                f"{card.name} takes no end image; remove it, or choose a first-and-last-frame model "
                "(Wan2.1 FLF2V, Wan2.2 I2V A14B)"
            )
        if not end and mode == "required":
            raise ConfigError(f"{card.name} makes the clip between two pictures: add an end image")
        if end:
            image_size(end)
        set_(self, "end_image", end)
        if self.width is None and self.height is None:
            preset = preset_for_image(card, width, height)
            set_(self, "width", preset.width)
            set_(self, "height", preset.height)
        super().__post_init__()


def i2v_pipeline(card: ModelCard) -> str | None:
    """``WanImageToVideoPipeline`` when ``card``'s folder is another pipeline's (TI2V-5B's ``WanPipeline``);
    None: the card's own pipeline."""
    return None if card.pipeline == I2V_PIPELINE else I2V_PIPELINE


@register
class I2VTask(WanTask):
    """Image to video with ``WanImageToVideoPipeline`` on one device, or split over idle GPUs: every rank
    reads the same pictures, and all take rank 0's image conditioning (:data:`IMAGE_CONDITIONING`) before
    the denoising in lockstep."""

    name = "i2v"
    request_type = I2VRequest

    def work(self, worker: Worker, job: Job, request: I2VRequest, preview: LatentPreview | None) -> WanWork:
        job.report("reading images")
        start, start_info, start_fit = prepare_image(request.image, request.width, request.height)
        inputs: dict[str, Any] = {"image": start}
        fields: dict[str, Any] = {"image": start_info.to_dict() | {"fit": start_fit}}
        if request.end_image:
            end, end_info, end_fit = prepare_image(request.end_image, request.width, request.height)
            inputs["last_image"] = end
            fields["end_image"] = end_info.to_dict() | {"fit": end_fit}

        def generate(pipe: Any, seeded: I2VRequest, **decode: Any) -> Any:
            return generate_t2v(pipe, seeded, job, preview, **decode, **inputs)

        return WanWork(
            generate,
            pipeline=i2v_pipeline(request.card),
            variant=(request.speed_config.loaded_variant, I2V_PIPELINE),
            fields=lambda seeded: fields,
            rank0_steps=IMAGE_CONDITIONING,
        )
