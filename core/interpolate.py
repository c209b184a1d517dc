"""Frame interpolation: a frame between every two, so a 16 fps video plays at 32 fps as long as before.

Behind one interface (:class:`Interpolator`: the frame halfway between two), three methods:

- ``rife``: learnt flow, Practical-RIFE v4.26 (:mod:`core.rife`, our implementation of the authors'
  IFNet), its weights fetched once from the authors' Hub repo through the model store
  (:mod:`weights.rife_download`); on the job's GPU, else the CPU.
- ``flow``: motion-compensated blending, the classical fallback: optical flow between the two frames
  (scikit-image's iterative Lucas-Kanade), both frames warped halfway along it and blended.
- ``blend``: the plain average of the two frames.

A video of N frames becomes 2N frames at twice its fps (the last frame shown twice), so its duration and
its sound (kept) do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import torch
from scipy.ndimage import map_coordinates, zoom
from skimage.registration import optical_flow_ilk

from core.rife import RifeInterpolator
from core.settings import Settings
from core.validation import ConfigError
from core.video_io import METADATA_KEY
from core.video_rewrite import rewrite_video, video_metadata
from weights.rife_download import ensure_rife_weights, rife_release

INTERPOLATORS = ("rife", "flow", "blend")
"""The method names a request may give."""

INTERPOLATION_CHOICES = (
    ("No interpolation", ""),
    ("Motion-compensated blending (optical flow), 2x fps", "flow"),
    ("Frame blending, 2x fps", "blend"),
    ("RIFE v4.26 (learnt motion; fetches 23 MB once), 2x fps", "rife"),
)
"""The forms' choices: label, method ("" = none)."""

FLOW_SIZE = 320
"""The flow is estimated on frames scaled so that their long side is at most this (then scaled back up)."""


class Interpolator(Protocol):
    name: str

    def middle(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """The uint8 RGB frame halfway between two uint8 RGB frames (H, W, 3)."""
        ...


class BlendInterpolator:
    """The average of the two frames (ghosts on motion; no flow)."""

    name = "blend"

    def middle(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return ((first.astype(np.uint16) + second + 1) // 2).astype(np.uint8)


class FlowInterpolator:
    """Motion-compensated blending: each frame warped half way along the optical flow, then averaged."""

    name = "flow"

    def flow(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """The flow (2, H, W: rows, columns) with ``first(x) ~ second(x + flow(x))``."""
        height, width = first.shape[:2]
        factor = min(1.0, FLOW_SIZE / max(height, width))
        grey = [zoom(frame.mean(axis=2), factor, order=1) for frame in (first, second)]
        small = optical_flow_ilk(grey[0], grey[1], radius=5)
        scale = (height / small.shape[1], width / small.shape[2])
        return np.stack([zoom(small[axis], scale, order=1)[:height, :width] / factor for axis in range(2)])

    def middle(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        flow = self.flow(first, second)
        rows, cols = np.mgrid[: first.shape[0], : first.shape[1]].astype(np.float64)
        out = np.empty(first.shape, dtype=np.float64)
        for channel in range(3):
            back = map_coordinates(
                first[..., channel].astype(np.float64),
                [rows - flow[0] / 2, cols - flow[1] / 2],
                order=1,
                mode="nearest",
            )
            ahead = map_coordinates(
                second[..., channel].astype(np.float64),
                [rows + flow[0] / 2, cols + flow[1] / 2],
                order=1,
                mode="nearest",
            )
            out[..., channel] = (back + ahead) / 2
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def rife_interpolator(settings: Settings | None, device: torch.device | None) -> Interpolator:
    """RIFE with its weights from ``settings``' models folder (fetched once) on ``device`` (else the CPU)."""
    if settings is None:
        raise ConfigError("interpolate 'rife' needs the studio's models folder; run it as a job")
    path = ensure_rife_weights(settings)
    return RifeInterpolator.load(path, device or torch.device("cpu"), rife_release().member)


def interpolator(
    name: str, settings: Settings | None = None, device: torch.device | None = None
) -> Interpolator:
    """The interpolator called ``name`` (RIFE loads its weights from ``settings`` onto ``device``)."""
    check_interpolator(name)
    if name == "rife":
        return rife_interpolator(settings, device)
    return {"flow": FlowInterpolator, "blend": BlendInterpolator}[name]()


def check_interpolator(name: str) -> None:
    """Refuse, at submission, a method name that does not exist."""
    if name not in INTERPOLATORS:
        raise ConfigError(f"interpolate must be one of {', '.join(INTERPOLATORS)}, got {name!r}")


@dataclass(frozen=True)
class Interpolation:
    """What :func:`interpolate_video` did, as the record keeps it."""

    method: str
    from_fps: float
    fps: float
    from_frames: int
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "from_fps": self.from_fps,
            "fps": self.fps,
            "from_frames": self.from_frames,
            "frames": self.frames,
        }


def _doubled(path: Path, method: Interpolator, done: Callable[[int], None]) -> Iterator[np.ndarray]:
    """``path``'s frames with a middle frame after each (the last frame repeated), in small batches."""
    previous: np.ndarray | None = None
    count = 0
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            current = frame.to_ndarray(format="rgb24")
            if previous is not None:
                yield np.stack([previous, method.middle(previous, current)])
            previous, count = current, count + 1
            done(count)
    if previous is not None:
        yield np.stack([previous, previous])


def video_rate(path: Path) -> tuple[float, int]:
    """``path``'s fps and frame count (its video packets, counted without decoding)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        count = sum(1 for packet in container.demux(stream) if packet.size)
    return fps, count


def interpolate_video(
    source: Path,
    target: Path,
    method: str,
    record: dict[str, Any] | None = None,
    on_frame: Callable[[int], None] | None = None,
    settings: Settings | None = None,
    device: torch.device | None = None,
) -> Interpolation:
    """Write ``source`` with a frame between every two to ``target`` (may be ``source``) at twice its fps,
    its sound kept; ``record`` (else ``source``'s embedded one, if any) gets an ``interpolation`` entry and
    the new ``frames``/``fps`` and is embedded. ``on_frame(n)`` after each source frame read. RIFE needs
    ``settings`` (its weights) and runs on ``device``."""
    chosen = interpolator(method, settings, device)
    fps, count = video_rate(source)
    result = Interpolation(method, fps, 2 * fps, count, 2 * count)
    embedded = record if record is not None else video_metadata(source).get(METADATA_KEY)
    if isinstance(embedded, dict):
        embedded |= {"interpolation": result.to_dict(), "frames": result.frames, "fps": result.fps}
    frames = _doubled(Path(source), chosen, on_frame or (lambda count: None))
    rewrite_video(source, target, frames, result.fps, embedded if isinstance(embedded, dict) else None)
    return result
