"""Video files through PyAV (FFmpeg): H.264 yuv420p mp4 written atomically, with metadata, and read back.

:class:`VideoWriter` streams frames into a hidden temporary file next to the target and renames it into
place on success. On failure or cancel, :meth:`VideoWriter.keep_partial` turns whatever frames were
written into ``<name>_partial.mp4`` so nothing a user waited for is lost.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from core.encoders import NVENC, Encoder, x264_at_crf

METADATA_KEY = "comment"
FRAGMENTED = {
    "movflags": "use_metadata_tags+empty_moov+default_base_moof",
    "frag_duration": "1000000",
    "flush_packets": "1",
}
"""mp4 options of a fragmented file: the header first, then a fragment every second (between keyframes
too: x264 puts one only every 250 frames), each written through to the file as it is made."""
TIME_BASE = Fraction(1, 90000)
"""The clock of a timed writer's frames (MPEG's 90 kHz)."""


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (T, H, W, 3) as uint8; uint8 input is returned as is."""
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def partial_path_for(path: Path) -> Path:
    """Where a cancelled or failed video's frames are kept: ``<name>_partial.mp4`` beside ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_partial{path.suffix}")


def temp_path_for(path: Path) -> Path:
    """The hidden file a video is written to before it is renamed to ``path``; it also reserves the name
    (``core.outputs.new_output_path`` creates it empty)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.part{path.suffix}")


class VideoWriter:
    """Write frames to an mp4 (H.264, yuv420p) that appears at ``path`` only once complete. ``encoder``
    (see ``core.encoders``) replaces the default libx264 at ``crf``."""

    def __init__(
        self,
        path: Path,
        fps: float,
        metadata: dict[str, Any] | None = None,
        crf: int = 18,
        encoder: Encoder | None = None,
        timed: bool = False,
        fragmented: bool = False,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.timed = timed
        """Frames carry their own times (``write(frames, times)``): a variable frame rate is kept."""
        self.last_time: float | None = None
        self.fragmented = fragmented
        """Fragmented mp4 (a fragment a second): a crash keeps the frames of every finished fragment
        (``core.stale_outputs`` recovers them at the next start)."""
        self.metadata = metadata or {}
        self.encoder = encoder or x264_at_crf(crf)
        self.frames_written = 0
        self.temp_path = temp_path_for(self.path)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = FRAGMENTED if self.fragmented else {"movflags": "use_metadata_tags"}
        container = av.open(str(self.temp_path), mode="w", format="mp4", options=options)
        for key, value in self.metadata.items():
            container.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        stream = container.add_stream(self.encoder.codec, rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if self.timed:
            stream.codec_context.time_base = TIME_BASE
        if self.fragmented:  # fragments carry no edit list: B-frames' delay would start the video late
            stream.codec_context.max_b_frames = 0
        stream.options = dict(self.encoder.options)
        if self.encoder.codec != NVENC:
            # x264's frame threads, not PyAV's default slice threads: 81 frames of 832x480 encode in
            # 2.15 s instead of 2.64 s on 2 cores, and frame threads scale further on more.
            stream.thread_type = "AUTO"
        self._container, self._stream = container, stream

    @property
    def duration(self) -> float:
        """Seconds the written frames cover (the last one shown for one nominal frame period)."""
        if self.last_time is not None:
            return self.last_time + 1.0 / self.fps
        return self.frames_written / self.fps

    def write(self, frames: np.ndarray, times: list[float] | None = None) -> None:
        """Append frames shaped (T, H, W, 3), uint8 or float in [0, 1]. H and W must be even. A ``timed``
        writer takes each frame's time in seconds from the first (``times``, increasing)."""
        frames = to_uint8_frames(np.asarray(frames))
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames shaped (T, H, W, 3), got {frames.shape}")
        if self._container is None:
            self._open(frames.shape[2], frames.shape[1])
        assert self._container is not None and self._stream is not None
        if self.timed and (times is None or len(times) != len(frames)):
            raise ValueError("a timed writer needs one time per frame")
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if self.timed and times is not None:
                video_frame.pts, video_frame.time_base = self._pts(times[index]), TIME_BASE
                video_frame.duration = round(1 / (self.fps * TIME_BASE))  # the last frame's, in the file
            self._container.mux(self._stream.encode(video_frame))
            self.frames_written += 1

    def _pts(self, time: float) -> int:
        """``time`` in :data:`TIME_BASE` ticks, kept after the previous frame's (pts must increase)."""
        pts = round(time / TIME_BASE)
        if self.last_time is not None:
            pts = max(pts, round(self.last_time / TIME_BASE) + 1)
        self.last_time = float(pts * TIME_BASE)
        return pts

    def _close_container(self) -> None:
        if self._container is not None:
            assert self._stream is not None
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None

    def commit(self) -> Path:
        """Finish the file and move it into place atomically."""
        if self.frames_written == 0:
            self.discard()
            raise ValueError("no frames were written")
        self._close_container()
        os.replace(self.temp_path, self.path)
        return self.path

    def keep_partial(self) -> Path | None:
        """Finish what was written as ``<name>_partial.mp4``; None when no frame was written."""
        if self.frames_written == 0:
            self.discard()
            return None
        self._close_container()
        partial = partial_path_for(self.path)
        os.replace(self.temp_path, partial)
        return partial

    def discard(self) -> None:
        """Drop the temporary file."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.keep_partial()


def write_video(path: Path, frames: np.ndarray, fps: float, metadata: dict[str, Any] | None = None) -> Path:
    """Write a whole clip atomically; returns ``path``."""
    with VideoWriter(path, fps, metadata) as writer:
        writer.write(frames)
    return Path(path)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as read back by :func:`probe_video`."""

    frames: int
    width: int
    height: int
    fps: float
    codec: str
    pix_fmt: str
    metadata: dict[str, str]


def probe_video(path: Path) -> VideoInfo:
    """Decode ``path`` fully and report its frame count, size, fps, codec and container metadata."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return VideoInfo(
            frames=count,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(stream.average_rate or stream.guessed_rate or 0),
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
            metadata=dict(container.metadata),
        )


def read_frames(path: Path) -> np.ndarray:
    """All frames of ``path`` as uint8 (T, H, W, 3)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    if not frames:
        raise ValueError(f"{path} has no video frames")
    return np.stack(frames)


def read_record(path: Path) -> dict[str, Any]:
    """The generation record embedded in a video written by this app."""
    return json.loads(probe_video(path).metadata[METADATA_KEY])
