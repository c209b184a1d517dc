"""RIFE frame interpolation (issue 29): our IFNet matches RIFE v4.26's (golden from its code on seeded
weights, ``tests/tools/make_rife_golden.py``), loads the authors' flownet.pkl keys or their release zip,
and the ``rife`` method doubles a video's frames and fps with weights from the models folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.interpolate import interpolate_video
from core.rife import IFNet, RifeInterpolator
from core.settings import Settings
from core.validation import ConfigError
from core.video_io import probe_video, read_record
from tests.rife_weights import frames, save_tiny_flownet, seeded_flownet
from weights.rife_download import FOLDER, ensure_rife_weights, rife_release

pytest_plugins = ["tests.conftest_magi_app"]

GOLDEN = Path(__file__).parent / "data" / "reference" / "rife_middle.npz"


def test_middle_frame_matches_rife_v4_26() -> None:
    golden = np.load(GOLDEN)
    assert str(golden["reference"]).startswith("HolyWu/vs-rife@")
    model = IFNet.from_state_dict(seeded_flownet())  # the authors' `module.` keys
    img0, img1 = frames()
    torch.testing.assert_close(model(img0, img1), torch.from_numpy(golden["middle"]), atol=1e-5, rtol=1e-4)


def test_release_zip_and_odd_sizes(tmp_path: Path) -> None:
    pkl = save_tiny_flownet(tmp_path / "flownet.pkl")
    release = tmp_path / "RIFEv4.26_0921.zip"
    with zipfile.ZipFile(release, "w") as archive:
        archive.writestr("train_log/IFNet_HDv3.py", "# the authors' model code")
        archive.write(pkl, "train_log/flownet.pkl")
    rife = RifeInterpolator.load(release, torch.device("cpu"))
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 255, (50, 70, 3), dtype=np.uint8) for _ in range(2))
    middle = rife.middle(first, second)
    assert middle.shape == (50, 70, 3) and middle.dtype == np.uint8
    assert np.array_equal(middle, RifeInterpolator.load(pkl, torch.device("cpu")).middle(first, second))
    torch.save({"module.encode.cnn0.weight": torch.zeros(1)}, tmp_path / "bad.pkl")
    with pytest.raises(ConfigError, match="not a RIFE"):
        RifeInterpolator.load(tmp_path / "bad.pkl", torch.device("cpu"))


def test_weights_offline_say_where_to_put_them(tmp_path: Path) -> None:
    settings = Settings(outputs_dir=tmp_path / "out", models_dir=tmp_path / "models", offline=True)
    with pytest.raises(ConfigError, match=r"put flownet\.pkl .*hzwer/RIFE.*'flow'"):
        ensure_rife_weights(settings)
    placed = save_tiny_flownet(settings.models_dir / FOLDER / rife_release().member)
    assert ensure_rife_weights(settings) == placed


def test_rife_doubles_frames_and_fps(clip_with_sound: Path, tmp_path: Path) -> None:
    settings = Settings(outputs_dir=tmp_path / "out", models_dir=tmp_path / "models", offline=True)
    save_tiny_flownet(settings.models_dir / FOLDER / "flownet.pkl")
    target = tmp_path / "double.mp4"
    result = interpolate_video(clip_with_sound, target, "rife", record={"task": "x"}, settings=settings)
    info = probe_video(target)
    assert (info.frames, info.fps) == (2 * result.from_frames, 2 * result.from_fps) == (80, 60.0)
    assert read_record(target)["interpolation"]["method"] == "rife"
    with pytest.raises(ConfigError, match="models folder"):
        interpolate_video(clip_with_sound, tmp_path / "x.mp4", "rife")
