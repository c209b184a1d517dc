"""Input pictures as users have them: each odd kind read upright as plain RGB, fitted without stretching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.image_input import MAX_SIDE, fit_image, image_size, load_image, prepare_image
from core.validation import ConfigError

RED = (220, 20, 20)


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[xy[1], xy[0]])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (60, 40), RED)
    exif = stored.getexif()
    exif[0x0112] = 6  # stored sideways: turn 90° clockwise to show
    stored.save(tmp_path / "phone.jpg", exif=exif)
    image, info = load_image(tmp_path / "phone.jpg")
    assert image.size == (40, 60) and image_size(tmp_path / "phone.jpg") == (40, 60)
    assert "turned upright (EXIF orientation)" in info.notes


def test_alpha_becomes_white_and_palette_transparency_too(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 255, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 40))
    rgba.save(tmp_path / "logo.png")
    image, info = load_image(tmp_path / "logo.png")
    assert image.mode == "RGB" and pixel(image, (30, 5)) == (255, 255, 255)
    assert pixel(image, (5, 5)) == (0, 0, 255)
    assert "transparent areas made white" in info.notes
    rgba.convert("P").save(tmp_path / "logo.gif", transparency=0)
    assert load_image(tmp_path / "logo.gif")[0].mode == "RGB"


def test_cmyk_palette_webp_and_16_bit(tmp_path: Path) -> None:
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "print.jpg")
    image, info = load_image(tmp_path / "print.jpg")
    red, green, blue = pixel(image, (5, 5))
    assert red > 200 and green < 60 and blue < 60 and "CMYK converted to RGB" in info.notes
    Image.new("RGB", (40, 40), RED).quantize(4).save(tmp_path / "palette.png")
    assert pixel(load_image(tmp_path / "palette.png")[0], (1, 1))[0] > 200
    Image.new("RGB", (40, 40), RED).save(tmp_path / "photo.webp")
    assert load_image(tmp_path / "photo.webp")[0].size == (40, 40)
    grey = np.full((40, 40), 32768, dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "deep.png")
    image, info = load_image(tmp_path / "deep.png")
    assert pixel(image, (0, 0)) == (128, 128, 128) and "16-bit picture reduced to 8 bits" in info.notes


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in (RED, (20, 20, 220))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    image, info = load_image(tmp_path / "anim.gif")
    assert pixel(image, (5, 5))[0] > 200 and "animated: first frame used" in info.notes


def test_huge_jpeg_is_reduced_while_decoding(tmp_path: Path) -> None:
    Image.new("RGB", (9000, 6000), RED).save(tmp_path / "camera.jpg", quality=50)
    image, info = load_image(tmp_path / "camera.jpg")
    assert max(image.size) <= MAX_SIDE and (info.width, info.height) == (9000, 6000)
    assert "reduced from 9000x6000 on reading" in info.notes


def test_tiny_and_non_images_are_refused(tmp_path: Path) -> None:
    Image.new("RGB", (20, 300)).save(tmp_path / "strip.png")
    with pytest.raises(ConfigError, match=r"strip\.png is 20x300: too small"):
        load_image(tmp_path / "strip.png")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(ConfigError, match=r"clip\.mp4 is not a picture this app can read"):
        load_image(tmp_path / "clip.mp4")
    with pytest.raises(ConfigError, match="not found"):
        load_image(tmp_path / "gone.png")


def test_fit_covers_and_crops_the_centre(tmp_path: Path) -> None:
    source = Image.new("RGB", (400, 200), (0, 0, 255))
    source.paste(RED, (100, 0, 300, 200))  # red centre, blue sides
    fitted, line = fit_image(source, 64, 64)
    assert fitted.size == (64, 64) and pixel(fitted, (2, 32))[0] > 200  # the blue sides were cut
    assert line == "400x200 scaled to 128x64, cut 32 px left and right → 64x64"
    source.save(tmp_path / "wide.png")
    _, _, note = prepare_image(tmp_path / "wide.png", 832, 480)
    assert "upscaled" in note and "may look soft" in note
