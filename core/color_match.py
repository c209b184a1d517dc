"""Colour and brightness kept consistent between the parts of a long video.

Each continuation's new frames are matched to a reference (the chain's first part): per channel of the
CIE LAB space (lightness and the two colour axes), the new frames' mean and spread over all their pixels
are moved to the reference's, blended in by ``strength`` (0 = untouched, 1 = fully matched). One shift
for the whole part, so no frame flickers against its neighbours. The drift measure is CIE76 delta E
between the mean LAB colours of two sets of frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.color import lab2rgb, rgb2lab

from core.validation import as_float
from core.video_io import probe_video, read_frames
from core.video_rewrite import rewrite_video

MIN_STD = 1e-3
"""Smallest per-channel spread divided by (a flat part is shifted, not stretched)."""


@dataclass(frozen=True)
class LabStats:
    """Mean and standard deviation of L, a and b over every pixel of some frames."""

    mean: np.ndarray
    std: np.ndarray

    def delta_e(self, other: LabStats) -> float:
        """CIE76 delta E between the two mean colours."""
        return float(np.linalg.norm(self.mean - other.mean))


def to_lab(frame: np.ndarray) -> np.ndarray:
    """One uint8 RGB frame (H, W, 3) in LAB, float64."""
    return rgb2lab(frame.astype(np.float64) / 255.0)


def lab_stats(frames: np.ndarray) -> LabStats:
    """The LAB mean and spread of uint8 ``frames`` (T, H, W, 3), read one frame at a time."""
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for frame in frames:
        lab = to_lab(frame).reshape(-1, 3)
        total += lab.sum(axis=0)
        squares += (lab * lab).sum(axis=0)
        count += len(lab)
    mean = total / count
    return LabStats(mean=mean, std=np.sqrt(np.maximum(squares / count - mean * mean, 0.0)))


def match_frames(
    frames: np.ndarray, reference: LabStats, strength: float, source: LabStats | None = None
) -> np.ndarray:
    """``frames`` (uint8, T H W 3) with their LAB mean and spread (``source``, computed when not given)
    moved ``strength`` of the way to ``reference``'s; returns uint8 frames of the same shape."""
    strength = as_float("colour match strength", strength, low=0.0, high=1.0)
    if strength == 0.0 or len(frames) == 0:
        return frames
    source = source or lab_stats(frames)
    scale = np.where(source.std > MIN_STD, reference.std / np.maximum(source.std, MIN_STD), 1.0)
    out = np.empty_like(frames)
    for index, frame in enumerate(frames):
        lab = to_lab(frame)
        matched = (lab - source.mean) * scale + reference.mean
        lab = lab + strength * (matched - lab)
        rgb = lab2rgb(lab)
        out[index] = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out


def colour_drift(frames: np.ndarray, reference: LabStats) -> float:
    """Mean colour drift of ``frames`` from ``reference``: delta E of their mean LAB colours."""
    return lab_stats(frames).delta_e(reference)


def match_video_tail(
    path: Path, count: int, reference: LabStats, strength: float, record: dict[str, Any]
) -> dict[str, Any]:
    """Match the last ``count`` frames of the video at ``path`` to ``reference`` and write it again in
    place (earlier frames, sound and title kept; ``record``, which gets a ``color_match`` entry, embedded).
    Returns that entry: strength, frames and the drift (delta E) before and after."""
    frames = read_frames(path)
    head, tail = frames[: len(frames) - count], frames[len(frames) - count :]
    source = lab_stats(tail)
    matched = match_frames(tail, reference, strength, source)
    summary = {
        "strength": strength,
        "frames": len(tail),
        "drift_before": round(source.delta_e(reference), 3),
        "drift_after": round(lab_stats(matched).delta_e(reference), 3),
    }
    record["color_match"] = summary
    rewrite_video(path, path, [head, matched], probe_video(path).fps, record)
    return summary
