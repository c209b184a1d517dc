"""The tiny video decoder (``core.taehv``): the authors' TAEHV outputs on seeded weights (golden from
madebyollin/taehv, ``tests/tools/make_taehv_golden.py``), their key format, frame counts and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.taehv import TinyVideoDecoder
from core.validation import ConfigError
from tests.taehv_weights import authors_shapes, save_tiny_taehv, seeded_state

GOLDEN = Path(__file__).parent / "data" / "reference" / "taehv_decode.npz"
CASES = {
    "wan21": (16, 1, {}),
    "wan22": (48, 2, {}),
    "wan21_preview": (16, 1, {"time_upscale": False, "space_upscale": (True, True, False)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_matches_the_authors_taehv(name: str) -> None:
    golden = np.load(GOLDEN)
    assert str(golden["reference"]).startswith("madebyollin/taehv@")
    channels, patch, options = CASES[name]
    state = seeded_state(authors_shapes(channels, patch=patch), seed=channels)
    state["encoder.0.weight"] = torch.zeros(64, 3 * patch * patch, 3, 3)  # their files hold both halves
    decoder = TinyVideoDecoder.from_state_dict(state, **options)
    latents = torch.from_numpy(golden[f"{name}_latents"])  # NTCHW, the authors' order
    frames = decoder.decode(latents.transpose(1, 2)).transpose(1, 2)
    expected = torch.from_numpy(golden[f"{name}_frames"])
    assert frames.shape == expected.shape
    torch.testing.assert_close(frames, expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(("channels", "patch", "side"), [(16, 1, 8), (48, 2, 16)])
def test_a_tiny_file_decodes_wan_frame_counts_and_sizes(tmp_path: Path, channels, patch, side) -> None:
    path = save_tiny_taehv(tmp_path / "tiny.pth", channels, patch)
    decoder = TinyVideoDecoder.load(path)
    assert decoder.latent_channels == channels and decoder.patch == patch
    for latent_frames in (1, 3, 21):
        frames = decoder.decode(torch.randn(1, channels, latent_frames, 6, 4))
        assert frames.shape == (1, 3, 4 * (latent_frames - 1) + 1, 6 * side, 4 * side)
        assert frames.min() >= 0 and frames.max() <= 1
    cheap = TinyVideoDecoder.load(path, time_upscale=False, space_upscale=(True, True, False))
    assert cheap.decode(torch.randn(1, channels, 5, 6, 4)).shape == (1, 3, 5, 3 * side, 2 * side)


def test_wrong_files_and_latents_say_what_is_wrong(tmp_path: Path) -> None:
    torch.save({"encoder.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="not a TAEHV decoder"):
        TinyVideoDecoder.load(tmp_path / "bad.pth")
    decoder = TinyVideoDecoder.load(save_tiny_taehv(tmp_path / "tiny.pth"))
    with pytest.raises(ConfigError, match="16, frames"):
        decoder.decode(torch.randn(1, 48, 2, 4, 4))
