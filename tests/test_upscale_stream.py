"""Streaming pieces: chunked decoding equals whole decoding, the frame schedule, sizes, the reader."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.upscale.color import adain_color_fix
from core.upscale.config import TCDecoderConfig
from core.upscale.frame_reader import FrameReader, probe_source
from core.upscale.full_vae import StreamingVAEDecoder, build_vae
from core.upscale.kv_cache import StreamingKVCache
from core.upscale.sizing import plan_size, resize_and_crop
from core.upscale.streamer import plan_frames
from core.upscale.tc_decoder import TinyConditionalDecoder, pixel_unshuffle_cond
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_upscale"]


def test_tc_decoder_chunked_equals_one_call() -> None:
    torch.manual_seed(0)
    decoder = TinyConditionalDecoder(TCDecoderConfig(channels=(8, 8, 8, 8)))
    latents = torch.randn(1, 16, 4, 2, 2)
    cond = torch.rand(1, 3, 13, 16, 16) * 2 - 1
    whole = decoder.decode(latents, cond)
    assert whole.shape == (1, 3, 13, 16, 16)
    decoder.reset()
    first = decoder.decode(latents[:, :, :2], cond[:, :, :5])
    second = decoder.decode(latents[:, :, 2:], cond[:, :, 5:])
    assert first.shape[2] == 5 and second.shape[2] == 8
    torch.testing.assert_close(torch.cat([first, second], 2), whole, atol=1e-5, rtol=1e-5)


def test_cond_pixel_shuffle_pads_with_the_first_frame() -> None:
    frames = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(1, 3, 2, 8, 8)
    shuffled = pixel_unshuffle_cond(frames)
    assert shuffled.shape == (1, 1, 768, 1, 1)
    assert shuffled[0, 0, 0, 0, 0] == frames[0, 0, 0, 0, 0]
    assert shuffled[0, 0, 3 * 64, 0, 0] == frames[0, 0, 1, 0, 0]  # time slot 3 holds the last real frame


def test_vae_streaming_decode_equals_whole_decode() -> None:
    torch.manual_seed(0)
    vae = build_vae({"base_dim": 8}).eval()
    streamer = StreamingVAEDecoder(vae)
    latents = torch.randn(1, 16, 3, 4, 4)
    mean, std = streamer._mean, streamer._std
    with torch.no_grad():
        whole = vae.decode(latents * std + mean).sample
    streamed = torch.cat([streamer.decode(latents[:, :, :1]), streamer.decode(latents[:, :, 1:])], 2)
    assert streamed.shape == whole.shape == (1, 3, 9, 32, 32)
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("frames", "padded", "chunks"),
    [(1, 25, 1), (21, 25, 1), (22, 33, 2), (29, 33, 2), (30, 41, 3), (100, 105, 11)],
)
def test_frame_plan_covers_every_input_frame(frames: int, padded: int, chunks: int) -> None:
    plan = plan_frames(frames)
    assert (plan.padded, plan.chunks) == (padded, chunks)
    assert 21 + 8 * (plan.chunks - 1) >= frames and (plan.padded - 1) % 8 == 0


def test_output_size_is_aligned_and_centre_cropped() -> None:
    size = plan_size(640, 360, 4)
    assert (size.scaled_width, size.scaled_height, size.width, size.height) == (2560, 1440, 2560, 1408)
    assert "centre-cropped to 2560x1408" in size.describe()
    narrowed = plan_size(1920, 1080, 2, max_input_width=960)
    assert (narrowed.width, narrowed.height) == (1920, 1024)
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:, 320:] = 255
    out = resize_and_crop(frame, size)
    assert out.shape == (1408, 2560, 3) and out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    with pytest.raises(ConfigError, match="smaller than 128"):
        plan_size(40, 30, 2)


def test_adain_gives_reference_statistics() -> None:
    frames = torch.rand(1, 3, 2, 16, 16) * 0.2
    reference = torch.rand(1, 3, 2, 16, 16) * 1.6 - 0.8
    fixed = adain_color_fix(frames, reference)
    torch.testing.assert_close(fixed.mean(dim=(-2, -1)), reference.mean(dim=(-2, -1)), atol=1e-4, rtol=0)


def test_kv_cache_keeps_the_last_slabs_and_offloads() -> None:
    cache = StreamingKVCache(num_layers=1, max_slabs=3, store_device=torch.device("cpu"))
    first = torch.arange(6.0).view(6, 1, 1).expand(6, 128, 4)
    new = torch.full((2, 128, 4), 20.0)
    k, _ = cache.with_new(0, new, new)
    assert k is new  # nothing cached yet
    cache.append(0, first, first, windows_per_slab=2)
    assert cache.with_new(0, new, new)[0].shape[0] == 8
    cache.append(0, first[:2] + 10, first[:2] + 10, windows_per_slab=2)
    k, _ = cache.with_new(0, new, new)
    assert k.shape[0] == 8 and k[0, 0, 0] == 2 and k[5, 0, 0] == 11 and k[-1, 0, 0] == 20
    assert cache.offloaded and cache.nbytes() == 2 * 6 * 128 * 4 * 4


def test_kv_cache_fp8_halves_the_bytes_within_fp8_rounding() -> None:
    torch.manual_seed(0)
    windows = torch.randn(4, 128, 64, dtype=torch.bfloat16) * 3
    model = StreamingKVCache(num_layers=1, max_slabs=3, num_heads=2)
    fp8 = StreamingKVCache(num_layers=1, max_slabs=3, num_heads=2, storage="fp8")
    for cache in (model, fp8):
        cache.append(0, windows, windows, windows_per_slab=2)
    empty = windows[:0]
    exact, _ = model.with_new(0, empty, empty)
    rounded, _ = fp8.with_new(0, empty, empty)
    assert torch.equal(exact, windows) and rounded.dtype == torch.bfloat16
    relative = ((rounded.float() - windows.float()).abs() / windows.float().abs().clamp(min=0.05)).max()
    assert 0 < relative <= 0.07  # e4m3: 3 mantissa bits
    scales = 4 * 128 * 2 * 4  # one float32 per token and head
    assert fp8.nbytes() == 2 * (windows.numel() + scales) < model.nbytes()


def test_reader_reads_ahead_only_a_bounded_buffer(clip_64: Path) -> None:
    info = probe_source(clip_64)
    assert (info.frames, info.width, info.height, info.has_audio) == (30, 64, 64, True)
    reader = FrameReader(clip_64, buffer=4)
    time.sleep(0.5)
    assert reader._queue.qsize() <= 4
    frames = list(reader)
    reader.close()
    assert len(frames) == 30 and frames[0].shape == (64, 64, 3)


def test_reader_turns_phone_clips_upright(tmp_path: Path) -> None:
    from test_continue_input import phone_clip

    path = phone_clip(tmp_path / "phone.mp4", 90, frames=3)
    info = probe_source(path)
    assert (info.width, info.height, info.frames) == (60, 80, 3)
    frames = list(FrameReader(path))
    assert len(frames) == 3 and frames[0].shape == (80, 60, 3)
    assert frames[0][:8, -8:].min() > 200  # the stored top-left corner is now top-right
