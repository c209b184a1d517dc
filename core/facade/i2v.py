"""The Image to video tab's side of the facade: its form (Text to video's, with the start and end images
and a size that can follow the picture), its request encoding, the crop preview and "use a frame of a
video as the start image"."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from core.facade.encode import resolution_size, t2v_request
from core.facade.fields import Field, Form
from core.facade.forms import MATCH_IMAGE
from core.frame_grab import extract_frame
from core.image_input import MIN_SIDE, fit_image, image_size, load_image
from core.tasks.i2v import preset_for_image
from core.validation import ConfigError
from weights.registry import ModelCard, get_card

FIT_NOTE = (
    f"The picture is scaled to cover the video's size and the centre is kept (nothing is stretched); "
    f"transparent areas become white; pictures under {MIN_SIDE} px a side are refused."
)


def i2v_static() -> Form:
    """The fields the Image to video tab adds to Text to video's."""
    return {
        "image_path": Field(label="Start image"),
        "fit_help": Field(value=FIT_NOTE),
        "end_image_path": Field(label="End image (last frame)"),
    }


def image_size_for(card: ModelCard, label: Any, image: str | None) -> tuple[int, int] | None:
    """The output size for a resolution choice: a preset or WIDTHxHEIGHT, or (Match the image) the
    default size in the picture's orientation; None when that needs a picture not chosen yet."""
    if label not in (None, "", MATCH_IMAGE):
        return resolution_size(card, label)
    if not image:
        return None
    preset = preset_for_image(card, *image_size(image))
    return preset.width, preset.height


def i2v_request(v: Mapping[str, Any]) -> dict[str, Any]:
    """``/i2v``'s values as an ``i2v`` request (Match the image: no size, the request picks it)."""
    if not v["image_path"]:
        raise ConfigError("Choose a start image.")
    auto = v["resolution_label"] in (None, "", MATCH_IMAGE)
    card = get_card(v["model_id"])
    label = card.resolution(card.defaults.resolution).label if auto else v["resolution_label"]
    data = t2v_request({**v, "resolution_label": label, "multi_gpu": v.get("multi_gpu") or "auto"})
    if auto:
        data |= {"width": None, "height": None}
    return data | {"task": "i2v", "image": v["image_path"], "end_image": v["end_image_path"] or None}


def crop_preview(image: str | None, model_id: str, label: Any) -> tuple[Image.Image | None, str]:
    """What the model will start from (the picture fitted to the output size) and a line saying how."""
    if not image:
        return None, "Choose a start image to see what the model starts from."
    card = get_card(model_id)
    try:
        size = image_size_for(card, label, image)
        picture, info = load_image(image)
    except ConfigError as exc:
        return None, f"⚠️ {exc}"
    assert size is not None
    fitted, line = fit_image(picture, *size)
    return fitted, "; ".join((*info.notes, line))


def estimate_size(model_id: str, label: Any, image: str | None) -> tuple[int, int]:
    """The size the memory estimate plans for (the default preset until a picture is chosen)."""
    card = get_card(model_id)
    size = image_size_for(card, label, image) if image else None
    if size is None and label not in (None, "", MATCH_IMAGE):
        size = resolution_size(card, label)
    preset = card.resolution(card.defaults.resolution)
    return size or (preset.width, preset.height)


def frame_as_image(video: str | None, outputs_dir: Path, index: int = -1) -> str:
    """Frame ``index`` (-1: the last) of ``video`` saved as a picture under the outputs folder, for the
    start image."""
    if not video:
        raise ConfigError("Make or choose a video first.")
    return str(extract_frame(video, Path(outputs_dir) / "frames", index))
