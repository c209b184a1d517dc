"""Reading a user's start or end image: checked once, turned upright, made plain RGB and fitted to the
model's size.

Pictures come as users have them: phone photos stored sideways with an EXIF orientation, PNGs with
transparency or 16 bits per channel, palette GIFs (animated: the first frame), WebP, CMYK JPEGs, camera
photos of 50 megapixels. :func:`load_image` handles each (a JPEG is decoded already reduced by its decoder,
so a huge photo never becomes a giant array; other formats are checked for size before decoding) and
:func:`fit_image` scales the picture to cover the output size and crops the centre: nothing is stretched.
Every problem becomes one :class:`ConfigError` saying what to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.validation import ConfigError

MIN_SIDE = 32
"""Shorter side below which a picture is refused: too little to start a video from."""
MAX_SIDE = 4096
"""Longer side a picture is reduced to on reading (larger than any model's output)."""
MAX_PIXELS = 400_000_000
"""Pixels beyond which a non-JPEG picture is refused before it is decoded (about 1.2 GB as RGB)."""
BACKGROUND = (255, 255, 255)
"""What transparent areas become."""
FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"


@dataclass(frozen=True)
class ImageInfo:
    """What the record keeps of an input picture: its file name, SHA-256, stored size and what reading
    it changed."""

    name: str
    sha256: str
    width: int
    height: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "width": self.width, "height": self.height}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(path: str | Path) -> Image.Image:
    """The picture at ``path``, opened lazily (header only); ConfigError for what is not one."""
    if not path or not str(path).strip():
        raise ConfigError("Choose a start image.")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"image {path.name!r} not found; upload the picture again")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ConfigError(f"{path.name} is not a picture this app can read; use a {FORMATS} file") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{path.name} cannot be read as a picture ({exc}); use a {FORMATS} file") from None
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ConfigError(
            f"{path.name} is {width}x{height}: too small to start a video from; use a picture at least "
            f"{MIN_SIDE} px on its shorter side (the model works at 480p or more)"
        )
    if image.format != "JPEG" and width * height > MAX_PIXELS:
        raise ConfigError(
            f"{path.name} is {width}x{height} ({width * height / 1e6:.0f} MP): too large to read safely; "
            "save it smaller (or as JPEG) first"
        )
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """The upright width and height of the picture at ``path`` (read from its header)."""
    image = _open(path)
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Plain 8-bit RGB: transparency over white, 16-bit and float greys scaled, palette and CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" else max(float(array.max()), 1.0)
        notes.append("16-bit picture reduced to 8 bits")
        return Image.fromarray(np.clip(array / top * 255 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent areas made white")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return image.convert("RGB")


def load_image(path: str | Path) -> tuple[Image.Image, ImageInfo]:
    """The picture at ``path`` upright, as RGB at most :data:`MAX_SIDE` on its longer side, and its info.
    An animated GIF or WebP gives its first frame."""
    image = _open(path)
    stored = image.size
    notes: list[str] = []
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        notes.append("animated: first frame used")
    if image.format == "JPEG" and max(stored) > MAX_SIDE:
        image.draft(image.mode, (MAX_SIDE, MAX_SIDE))  # the decoder scales by 1/2, 1/4 or 1/8
    orientation = image.getexif().get(0x0112, 1)
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{Path(path).name} is damaged or truncated ({exc}); save it again") from None
    if orientation != 1:
        notes.append("turned upright (EXIF orientation)")
    rgb = _to_rgb(upright, notes)
    if max(rgb.size) > MAX_SIDE:
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    if max(stored) > MAX_SIDE:
        notes.append(f"reduced from {stored[0]}x{stored[1]} on reading")
    info = ImageInfo(Path(path).name, file_sha256(Path(path)), stored[0], stored[1], tuple(notes))
    return rgb, info


def fit_image(image: Image.Image, width: int, height: int) -> tuple[Image.Image, str]:
    """``image`` scaled to cover ``width`` x ``height`` and centre-cropped to it, with a line saying what
    was done (scale, and what the crop cut from which sides)."""
    source_w, source_h = image.size
    scale = max(width / source_w, height / source_h)
    scaled_w, scaled_h = max(width, round(source_w * scale)), max(height, round(source_h * scale))
    fitted = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    cut_w, cut_h = scaled_w - width, scaled_h - height
    if cut_w > 1:
        crop = f", cut {cut_w // 2} px left and right"
    elif cut_h > 1:
        crop = f", cut {cut_h // 2} px top and bottom"
    else:
        crop = ""
    verb = "upscaled" if scale > 1 else "scaled"
    soft = " (upscaled: may look soft)" if scale > 1.5 else ""
    line = f"{source_w}x{source_h} {verb} to {scaled_w}x{scaled_h}{crop} → {width}x{height}{soft}"
    return fitted, line


def prepare_image(path: str | Path, width: int, height: int) -> tuple[Image.Image, ImageInfo, str]:
    """The picture at ``path`` ready for a ``width`` x ``height`` model, its info and a line saying what
    reading and fitting did to it."""
    image, info = load_image(path)
    fitted, line = fit_image(image, width, height)
    return fitted, info, "; ".join((*info.notes, line))
