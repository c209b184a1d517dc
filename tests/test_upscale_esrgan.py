"""The Real-ESRGAN fallback: official key layouts load, frames upscale x2/x4, jobs keep frames and audio."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.jobs import Job
from core.tasks import task_for
from core.tiny.esrgan import tiny_compact_checkpoint, tiny_rrdbnet_checkpoint
from core.upscale.esrgan import RRDBNet, SRVGGNetCompact, build_network, load_network, load_with_spandrel
from core.upscale.esrgan_stream import ESRGANStreamer, tiled_forward
from core.upscale.request import UpscaleRequest
from core.upscale.sizing import plan_size
from core.validation import ConfigError
from core.video_io import probe_video, read_record

pytest_plugins = ["tests.conftest_upscale"]


def test_real_sizes_match_the_published_files() -> None:
    """Parameter counts of RealESRGAN_x4plus, realesr-general-x4v3 and realesr-animevideov3, and the
    official key names of both architectures."""
    x4plus = RRDBNet().state_dict()
    assert sum(v.numel() for v in x4plus.values()) == 16_697_987 and len(x4plus) == 702
    for name in ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"):
        assert f"{name}.weight" in x4plus and f"{name}.bias" in x4plus
    assert x4plus["body.22.rdb3.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)
    assert RRDBNet(scale=2).state_dict()["conv_first.weight"].shape == (64, 12, 3, 3)
    general, anime = SRVGGNetCompact(num_conv=32), SRVGGNetCompact(num_conv=16)
    assert sum(p.numel() for p in general.parameters()) == 1_213_296
    assert sum(p.numel() for p in anime.parameters()) == 621_424
    assert anime.state_dict()["body.1.weight"].shape == (64,)  # PReLU
    assert anime.state_dict()["body.34.weight"].shape == (48, 64, 3, 3)


@pytest.mark.parametrize(
    ("checkpoint", "arch", "scale"),
    [
        (tiny_rrdbnet_checkpoint(4), "RRDBNet", 4),
        (tiny_rrdbnet_checkpoint(2), "RRDBNet", 2),
        (tiny_compact_checkpoint(4), "SRVGGNetCompact", 4),
    ],
)
def test_tiny_official_layouts_load_and_upscale(
    checkpoint: dict, arch: str, scale: int, tmp_path: Path
) -> None:
    path = tmp_path / "model.pth"
    torch.save(checkpoint, path)
    network = load_network(path, use_spandrel=False)
    assert (network.arch, network.scale, network.loader) == (arch, scale, "builtin")
    assert network.module(torch.rand(1, 3, 11, 14)).shape == (1, 3, 11 * scale, 14 * scale)


def test_other_state_dicts_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Real-ESRGAN"):
        build_network({"encoder.weight": torch.zeros(1)})


@pytest.mark.skipif(
    load_with_spandrel(tiny_compact_checkpoint()["params"]) is None, reason="spandrel does not import here"
)
def test_spandrel_and_builtin_networks_agree() -> None:
    for checkpoint in (tiny_rrdbnet_checkpoint(4), tiny_rrdbnet_checkpoint(2), tiny_compact_checkpoint(4)):
        state = next(iter(checkpoint.values()))
        ours, theirs = build_network(dict(state)), load_with_spandrel(dict(state))
        assert theirs is not None and theirs.scale == ours.scale
        x = torch.rand(1, 3, 21, 17)
        torch.testing.assert_close(theirs.module.eval()(x), ours.module(x))


def test_tiles_give_the_whole_frame_result() -> None:
    """Tiles that see more context than the network's receptive field (4 convs: 4 pixels) are exact."""
    network = build_network(dict(tiny_compact_checkpoint(4)["params"]))
    x = torch.rand(1, 3, 40, 52)
    with torch.no_grad():
        torch.testing.assert_close(tiled_forward(network, x, tile=16, pad=8), network.module(x))


def test_x2_with_an_x4_model_is_x4_resized_down() -> None:
    network = build_network(dict(tiny_compact_checkpoint(4)["params"]))
    frame = np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)
    streamer = ESRGANStreamer(network, plan_size(40, 30, 2, align=2))
    out = streamer.upscale(frame)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    with torch.no_grad():
        x4 = network.module(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)
    expected = F.interpolate(x4, (60, 80), mode="bicubic", antialias=True)[0].clamp(0, 1).mul(255).round()
    np.testing.assert_array_equal(out, expected.permute(1, 2, 0).to(torch.uint8).numpy())


def audio_streams(path: Path) -> int:
    with av.open(str(path)) as container:
        return len(container.streams.audio)


@pytest.mark.parametrize(("scale", "max_width", "size"), [(4, None, 256), (2, None, 128), (4, 40, 160)])
def test_clip_upscales_with_every_frame_and_its_audio(
    scale: int, max_width: int | None, size: int, clip_64: Path, upscale_runner: SimpleNamespace
) -> None:
    request = UpscaleRequest(model="tiny-esrgan", video=str(clip_64), scale=scale, max_input_width=max_width)
    record = task_for(request).run(upscale_runner, Job(request), request)
    info = probe_video(Path(record["path"]))
    assert (info.width, info.height, info.frames) == (size, size, 30)
    assert audio_streams(Path(record["path"])) == 1
    embedded = read_record(Path(record["path"]))
    assert (embedded["engine"], embedded["arch"]) == ("esrgan", "SRVGGNetCompact")
    assert embedded["native_scale"] == 4
    assert embedded["status"] == "done" and embedded["frames_written"] == 30
    upscale_runner.models.unload()


def test_cancel_keeps_the_frames_so_far_with_their_audio(
    clip_64: Path, upscale_runner: SimpleNamespace
) -> None:
    class CancelAtFrame12(Job):
        def report(self, stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
            super().report(stage, step, total, detail)
            if stage.startswith("upscaling") and step == 12:
                self.cancel()

    request = UpscaleRequest(model="tiny-esrgan", video=str(clip_64), scale=2)
    record = task_for(request).run(upscale_runner, CancelAtFrame12(request), request)
    partial = Path(record["path"])
    assert record["status"] == "cancelled" and partial.name.endswith("_partial.mp4")
    assert probe_video(partial).frames == 12
    with av.open(str(partial)) as container:
        assert len(container.streams.audio) == 1
        audio = container.streams.audio[0]
        packets = [p for p in container.demux(audio) if p.pts is not None]
        audio_end = float((packets[-1].pts + packets[-1].duration) * audio.time_base)
    assert audio_end == pytest.approx(12 / 30, abs=0.05)
    upscale_runner.models.unload()


def test_request_checks_the_model_scale(clip_64: Path) -> None:
    request = UpscaleRequest(model="tiny-esrgan", video=str(clip_64), scale=2)
    assert request.engine == "esrgan" and request.to_dict()["model"] == "tiny-esrgan"
    with pytest.raises(ConfigError, match="x2 at most"):
        UpscaleRequest(model="realesrgan-x2plus", video=str(clip_64), scale=4)
    assert UpscaleRequest(model="realesrgan-x2plus", video=str(clip_64), scale=2).engine == "esrgan"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_half_precision_on_the_gpu_matches_the_cpu() -> None:
    """Real-size general-x4v3 network with random weights: float16 on CUDA, tiled, against float32 on the
    CPU in one piece (the compact model adds the upsampled input, so the output is a real picture)."""
    torch.manual_seed(0)
    state = SRVGGNetCompact(num_conv=32).state_dict()
    cpu = build_network(dict(state))
    gpu = build_network(dict(state)).to(torch.device("cuda"), torch.float16)
    frame = np.random.default_rng(0).integers(0, 255, (72, 136, 3), np.uint8)
    size = plan_size(136, 72, 4, align=2)
    expected = ESRGANStreamer(cpu, size, tile=1024).upscale(frame).astype(int)
    out = ESRGANStreamer(gpu, size, tile=64).upscale(frame).astype(int)
    assert out.shape == expected.shape == (288, 544, 3) and expected.std() > 20
    assert np.abs(out - expected).mean() < 1.0
