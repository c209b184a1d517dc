"""Reading a user's video for continuation: checked once, then streamed at the model's fps and size.

:func:`open_input` validates the file (type, readable, has frames, long enough) and picks the model
resolution that best fits its aspect; :func:`iter_resampled` decodes it with PyAV, drops or repeats
frames by timestamp to reach the target fps, and scales and center-crops each frame to the target size.
Frames are turned upright first (:func:`upright_rgb`): phones store portrait clips as landscape frames
with a rotation in the container's display matrix.
Every problem with the file becomes one :class:`ConfigError` with a message meant for the user.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from core.validation import ConfigError
from weights.registry import ModelCard, Resolution

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts")
TIME_TOLERANCE = 0.1  # of an output frame: absorbs timestamps rounded by the container (e.g. to 1 ms)


@dataclass(frozen=True)
class InputVideo:
    """A checked input video and the size and fps it is converted to."""

    path: Path
    source_width: int
    source_height: int
    source_fps: float
    source_frames: int
    width: int
    height: int
    fps: int
    frames: int
    has_audio: bool
    rotation: int = 0
    """Degrees clockwise the stored frames are turned to stand upright (0, 90, 180 or 270); the source
    size is the upright one."""

    @property
    def duration(self) -> float:
        """Seconds covered by the converted frames."""
        return self.frames / self.fps

    def describe(self, context_frames: int) -> str:
        """e.g. ``input 1080x1920 30 fps, rotated 90° → 544x960 24 fps, using last 17 frames``."""
        rotated = f", rotated {self.rotation}°" if self.rotation else ""
        return (
            f"input {self.source_width}x{self.source_height} {self.source_fps:g} fps{rotated} → "
            f"{self.width}x{self.height} {self.fps} fps, using last {min(context_frames, self.frames)} frames"
        )


def pick_resolution(card: ModelCard, width: int, height: int) -> Resolution:
    """The card's resolution whose aspect ratio is closest to ``width``x``height``."""
    aspect = math.log(width / height)
    return min(card.resolutions, key=lambda r: abs(math.log(r.width / r.height) - aspect))


def open_input(path: str | Path, card: ModelCard, min_frames: int = 1) -> InputVideo:
    """Check ``path`` and describe it converted for ``card``; ``min_frames`` is the least usable length."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"input video not found: {path}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(
            f"{path.name}: unsupported file type {path.suffix or '(none)'}; "
            f"use one of {', '.join(VIDEO_SUFFIXES)}"
        )
    times = [time for time, _ in _decode(path, None, frames=False)]
    width, height, fps, has_audio, rotation = stream_info(path)
    if rotation in (90, 270):
        width, height = height, width
    if not times:
        raise ConfigError(f"{path.name} has no video frames that can be decoded")
    preset = pick_resolution(card, width, height)
    frames = resampled_count(times, fps, card.fps)
    if frames < min_frames:
        raise ConfigError(
            f"{path.name} is too short: {frames} frames at {card.fps} fps ({frames / card.fps:.2f} s); "
            f"the chosen overlap needs at least {min_frames} frames. Use a longer clip or fewer overlap "
            "frames; a tiny test model's clip continues with a tiny model (Tiny SkyReels)"
        )
    return InputVideo(
        path=path,
        source_width=width,
        source_height=height,
        source_fps=fps,
        source_frames=len(times),
        width=preset.width,
        height=preset.height,
        fps=card.fps,
        frames=frames,
        has_audio=has_audio,
        rotation=rotation,
    )


def iter_resampled(video: InputVideo) -> Iterator[np.ndarray]:
    """The input's frames as uint8 (H, W, 3) at ``video.fps`` and ``video.width``x``video.height``."""
    scaled = _scaled_size(video.source_width, video.source_height, video.width, video.height)
    emitted = 0
    previous: np.ndarray | None = None
    for time, frame in _decode(video.path, scaled):
        if previous is not None:
            while emitted < video.frames and emitted / video.fps < time - TIME_TOLERANCE / video.fps:
                yield previous
                emitted += 1
        previous = _center_crop(frame, video.width, video.height)
    while previous is not None and emitted < video.frames:
        yield previous
        emitted += 1


def last_frames(video: InputVideo, count: int) -> np.ndarray:
    """The last ``count`` converted frames, uint8 (count, H, W, 3)."""
    tail: deque[np.ndarray] = deque(maxlen=count)
    tail.extend(iter_resampled(video))
    return np.stack(list(tail))


def clockwise_rotation(frame: av.VideoFrame) -> int:
    """Degrees clockwise (0, 90, 180 or 270) that turn ``frame`` upright, from its display matrix."""
    return round(-frame.rotation / 90) % 4 * 90


def upright_rgb(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """``frame`` as uint8 RGB (H, W, 3), upright as players show it, at ``size`` (W, H) when given."""
    turns = clockwise_rotation(frame) // 90
    if size is not None and turns % 2:
        size = (size[1], size[0])  # scale the stored frame so that it has ``size`` once turned
    width, height = size if size is not None else (None, None)
    image = frame.to_ndarray(format="rgb24", width=width, height=height)
    return np.ascontiguousarray(np.rot90(image, k=-turns)) if turns else image


def stream_info(path: Path) -> tuple[int, int, float, bool, int]:
    """Stored width and height, fps, whether there is sound, and the first frame's clockwise rotation."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        first = next(container.decode(stream), None)
        rotation = clockwise_rotation(first) if first is not None else 0
        width, height = stream.codec_context.width, stream.codec_context.height
        return width, height, fps, bool(container.streams.audio), rotation


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name} could not be read as a video ({_reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise ConfigError(f"{path.name} has no video track")
    return container


def iter_upright(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of ``path`` as uint8 RGB (H, W, 3), upright, at its stored size, one at a time. Problems
    are ConfigErrors naming only the file's name: unreadable, no video track, damaged after N frames
    (raised once the frames before the damage were yielded)."""
    for _, frame in timed_frames(path):
        yield frame


def timed_frames(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """:func:`iter_upright` with each frame's time in seconds from the first (variable frame rates kept)."""
    for time, frame in _decode(Path(path), None):
        assert frame is not None
        yield time, frame


def _decode(
    path: Path, size: tuple[int, int] | None, frames: bool = True
) -> Iterator[tuple[float, np.ndarray | None]]:
    """(seconds from the first frame, upright rgb frame scaled to ``size`` when given; None when not
    ``frames``)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        step = 1.0 / float(rate) if rate else 1.0 / 24.0
        start: float | None = None
        index = 0
        try:
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else index * step
                start = time if start is None else start
                yield time - start, upright_rgb(frame, size) if frames else None
                index += 1
        except av.FFmpegError as exc:
            raise ConfigError(f"{path.name} is damaged after {index} frames ({_reason(exc)})") from exc


def resampled_count(times: list[float], source_fps: float, fps: int) -> int:
    """How many frames at ``fps`` cover the source: its last frame is shown for one source frame period."""
    period = 1.0 / source_fps if source_fps > 0 else 1.0 / fps
    return max(1, math.floor((times[-1] + period) * fps + TIME_TOLERANCE))


def _scaled_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """The size that covers the target while keeping the source aspect (the crop removes the rest)."""
    scale = max(target_width / width, target_height / height)
    return max(target_width, round(width * scale)), max(target_height, round(height * scale))


def _center_crop(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    top = (frame.shape[0] - height) // 2
    left = (frame.shape[1] - width) // 2
    return np.ascontiguousarray(frame[top : top + height, left : left + width])


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__
