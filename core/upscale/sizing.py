"""Output size as the FlashVSR deployment picks it, and the per-frame resize to that size.

The input is optionally narrowed to ``max_input_width`` (aspect kept, rounded to whole pixels), scaled by
2 or 4, and the result brought to multiples of ``align`` on both sides: 128 for FlashVSR (the sparse
attention works on 128-pixel windows), 2 for Real-ESRGAN (H.264 needs even sides). ``fit`` says how:
``crop`` cuts the scaled frame down with a centre crop (a 4:3 clip can lose a fifth of its height), ``pad``
extends it right and bottom (edge pixels) for the model and cuts the output back to the scaled size, so
nothing of the picture is lost. FlashVSR frames are resized once, bicubic, straight from the original to
the scaled size, then cropped or padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.validation import ConfigError

ALIGN = 128
FITS = ("pad", "crop")
"""How the scaled frame meets the model's multiple: pad it (and cut the output back), or centre-crop it."""
ENGINE_ALIGN = {"flashvsr": ALIGN, "esrgan": 2}
"""Output sides are multiples of this per engine: FlashVSR's attention windows, H.264's even sides."""
MAX_OUTPUT_PIXELS = 3840 * 2160
"""The largest output: 4K UHD (8.3 MP a frame). Beyond it H.264 leaves its highest common level (5.1/5.2
decoders, browsers and NVENC's 4096-pixel limit on older cards), and a FlashVSR frame of 8K needs four
times 4K's activation memory for no viewer that plays it."""


@dataclass(frozen=True)
class OutputSize:
    input_width: int
    input_height: int
    narrowed_width: int
    narrowed_height: int
    scaled_width: int
    scaled_height: int
    width: int
    height: int
    align: int = ALIGN
    fit: str = "crop"

    @property
    def model_width(self) -> int:
        """The frame width the model runs on (the output's, or padded up to ``align``)."""
        return -(-self.width // self.align) * self.align if self.fit == "pad" else self.width

    @property
    def model_height(self) -> int:
        return -(-self.height // self.align) * self.align if self.fit == "pad" else self.height

    def describe(self) -> str:
        """One line for the user, e.g. ``640x360 x4 -> 2560x1440, cropped to 2560x1408``."""
        text = f"{self.input_width}x{self.input_height} -> {self.scaled_width}x{self.scaled_height}"
        if (self.model_width, self.model_height) != (self.width, self.height):
            text += f", padded to {self.model_width}x{self.model_height} for the model and cut back"
        elif (self.width, self.height) != (self.scaled_width, self.scaled_height):
            text += f", centre-cropped to {self.width}x{self.height} (multiples of {self.align})"
        return text


def plan_size(
    width: int,
    height: int,
    scale: int,
    max_input_width: int | None = None,
    align: int = ALIGN,
    fit: str = "crop",
) -> OutputSize:
    """The narrowed, the scaled and the output size of a ``width`` x ``height`` input: cut down to
    multiples of ``align`` (``fit="crop"``), or the scaled size itself (even sides) with the model's frame
    padded up to ``align`` (``fit="pad"``)."""
    if width < 1 or height < 1:
        raise ConfigError(f"invalid video size {width}x{height}")
    base_w, base_h = width, height
    if max_input_width is not None and width > max_input_width:
        base_w, base_h = max_input_width, max(1, round(height * max_input_width / width))
    scaled_w, scaled_h = base_w * scale, base_h * scale
    if fit == "pad":
        return OutputSize(
            width,
            height,
            base_w,
            base_h,
            scaled_w,
            scaled_h,
            scaled_w // 2 * 2,
            scaled_h // 2 * 2,
            align,
            fit,
        )
    out_w, out_h = scaled_w // align * align, scaled_h // align * align
    if out_w == 0 or out_h == 0:
        raise ConfigError(
            f"{width}x{height} x{scale} is {scaled_w}x{scaled_h}, smaller than {align} pixels on a side; "
            "use a larger scale or input"
        )
    if out_w * out_h > MAX_OUTPUT_PIXELS:
        fit = int(width * (MAX_OUTPUT_PIXELS / (out_w * out_h)) ** 0.5) // 2 * 2
        raise ConfigError(
            f"{width}x{height} x{scale} would be {out_w}x{out_h}, more than 4K (3840x2160), the largest "
            f"output this app writes; {'choose x2, or ' if scale > 2 else ''}set a max input width of {fit} "
            "or less"
        )
    return OutputSize(width, height, base_w, base_h, scaled_w, scaled_h, out_w, out_h, align)


def resize_and_crop(frame: np.ndarray, size: OutputSize) -> np.ndarray:
    """uint8 (H, W, 3) input frame -> uint8 (size.model_height, size.model_width, 3): cropped, or padded
    right and bottom with its edge pixels."""
    image = Image.fromarray(frame).resize((size.scaled_width, size.scaled_height), Image.Resampling.BICUBIC)
    if size.fit == "pad":
        scaled = np.asarray(image)[: size.height, : size.width]
        extra = ((0, size.model_height - size.height), (0, size.model_width - size.width), (0, 0))
        return np.pad(scaled, extra, mode="edge")
    left = (size.scaled_width - size.width) // 2
    top = (size.scaled_height - size.height) // 2
    return np.asarray(image.crop((left, top, left + size.width, top + size.height)))


def cut_back(frames: np.ndarray, size: OutputSize) -> np.ndarray:
    """Output frames (T, H, W, 3) of a padded run cut back to the output size (unchanged otherwise)."""
    return frames[:, : size.height, : size.width]
