"""H.264 encoder choice for exports: NVENC when this machine can open it, else libx264.

PyAV's FFmpeg build lists ``h264_nvenc`` on every machine; opening it fails without an NVIDIA GPU and
driver, so availability is decided by opening a small encoder once. Quality 1 (smallest file) .. 10
(best) maps to x264's CRF 35 .. 12, and to the same numbers as NVENC's constant-quality ``cq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import av

NVENC = "h264_nvenc"
X264 = "libx264"
NVENC_PRESET = "p5"
X264_PRESET = "medium"
X264_LOOKAHEAD = 10
"""Frames x264 looks ahead (medium's default: 40). A job's video is encoded while the VAE decodes it;
with 40 frames of lookahead plus the frame threads most of a clip was still queued when the decode ended
(bench/write_speed.py, 16 cores, 81 frames of 832x480: 1.01 s left against 0.43 s at 10 on noise-like
frames, 0.16 s against 0.08 s on a smooth scene; same file size and PSNR on both)."""


def quality_to_crf(quality: int) -> int:
    """Export quality 1 (smallest file) .. 10 (best) as an x264 CRF: 35 .. 12."""
    return round(35 - (quality - 1) * 23 / 9)


@dataclass(frozen=True)
class Encoder:
    """An FFmpeg video encoder and the options it is opened with."""

    codec: str
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """e.g. ``libx264 crf 18`` or ``h264_nvenc cq 18``, for the record."""
        setting = "cq" if self.codec == NVENC else "crf"
        return f"{self.codec} {setting} {self.options.get(setting, '?')}"


def x264_at_crf(crf: int) -> Encoder:
    """libx264 at ``crf``, preset medium, lookahead :data:`X264_LOOKAHEAD`."""
    return Encoder(
        X264, {"crf": str(crf), "preset": X264_PRESET, "x264-params": f"rc-lookahead={X264_LOOKAHEAD}"}
    )


def x264_encoder(quality: int) -> Encoder:
    """libx264 at the quality's CRF (see :func:`x264_at_crf`)."""
    return x264_at_crf(quality_to_crf(quality))


def nvenc_encoder(quality: int, gpu: int | None = None) -> Encoder:
    """h264_nvenc in constant-quality mode (VBR with no bitrate cap) at the quality's CQ, on CUDA
    device ``gpu`` (the encoder's default GPU when None)."""
    options = {"rc": "vbr", "cq": str(quality_to_crf(quality)), "b": "0", "preset": NVENC_PRESET}
    if gpu is not None:
        options["gpu"] = str(gpu)
    return Encoder(NVENC, options)


@lru_cache(maxsize=1)
def nvenc_available() -> bool:
    """Whether ``h264_nvenc`` exists in PyAV's FFmpeg and opens here (checked once per process)."""
    try:
        context = av.CodecContext.create(NVENC, "w")
        context.width, context.height = 256, 256
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 30)
        context.open()
    except (av.FFmpegError, OSError, ValueError):
        return False
    return True


def choose_encoder(quality: int, gpu: int | None = None, allow_nvenc: bool = True) -> Encoder:
    """NVENC when allowed and available, else libx264, at ``quality`` 1-10."""
    if allow_nvenc and nvenc_available():
        return nvenc_encoder(quality, gpu)
    return x264_encoder(quality)
