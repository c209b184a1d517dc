"""Compare two videos frame by frame: PSNR and SSIM (scikit-image), LPIPS where its backbone is available.

Identical frames have an infinite PSNR; we report :data:`MAX_PSNR` (100 dB) instead so averages, JSON
and plots stay finite. Videos of different sizes or lengths are compared over their common frames after
resizing B to A's size; :attr:`Comparison.notes` says when that happened. Both videos are streamed
through the upright reader (``core.video_input.iter_upright``: rotation metadata honoured), one frame of
each at a time, so memory does not grow with length or size; a file damaged part way is compared up to
the damage, with a note.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from core.validation import ConfigError
from core.video_input import iter_upright, stream_info
from core.video_io import VideoWriter

MAX_PSNR = 100.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 frames, capped at :data:`MAX_PSNR` (identical frames)."""
    with np.errstate(divide="ignore"):
        value = peak_signal_noise_ratio(a, b, data_range=255)
    return MAX_PSNR if not math.isfinite(value) else min(float(value), MAX_PSNR)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 RGB frames (H, W, 3), channels averaged."""
    window = min(7, *a.shape[:2])
    window -= 1 - window % 2  # an odd window no larger than the frame
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=window))


def lpips_unavailable_reason() -> str | None:
    """Why LPIPS cannot run here (it needs torchvision and downloaded backbone weights); None if it can."""
    try:
        import lpips  # noqa: F401
        import torchvision  # noqa: F401
    except ModuleNotFoundError as exc:
        return f"the optional {exc.name} package is not installed (.venv/bin/pip install lpips torchvision)"
    except Exception as exc:  # a broken torchvision raises more than ImportError
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None


class LpipsScorer:
    """LPIPS (AlexNet) of one frame pair at a time, the network built once; call only when
    :func:`lpips_unavailable_reason` is None."""

    def __init__(self) -> None:
        import lpips

        self.model = lpips.LPIPS(net="alex", verbose=False)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        import torch

        def tensor(frame: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 127.5 - 1.0

        with torch.no_grad():
            return float(self.model(tensor(a), tensor(b)).flatten()[0])


def resize_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """One uint8 (H, W, 3) frame at ``width`` x ``height`` (bilinear, antialiased when shrinking)."""
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))


@dataclass
class Comparison:
    """Per-frame and mean metrics of video B against video A."""

    frames: int
    psnr: list[float]
    ssim: list[float]
    lpips: list[float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))

    @property
    def mean_lpips(self) -> float | None:
        return float(np.mean(self.lpips)) if self.lpips else None

    def summary(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "psnr_db": round(self.mean_psnr, 4),
            "ssim": round(self.mean_ssim, 6),
            "lpips": None if self.mean_lpips is None else round(self.mean_lpips, 6),
            "notes": self.notes,
        }

    def to_dict(self) -> dict[str, object]:
        return {"mean": self.summary(), **asdict(self)}

    def table(self) -> str:
        """A plain-text table: one line per frame, then the means and notes."""
        lines = [f"{'frame':>5}  {'PSNR dB':>8}  {'SSIM':>7}" + ("  LPIPS" if self.lpips else "")]
        for i in range(self.frames):
            extra = f"  {self.lpips[i]:.4f}" if self.lpips else ""
            lines.append(f"{i:>5}  {self.psnr[i]:>8.3f}  {self.ssim[i]:>7.4f}{extra}")
        extra = f"  {self.mean_lpips:.4f}" if self.lpips else ""
        lines.append(f"{'mean':>5}  {self.mean_psnr:>8.3f}  {self.mean_ssim:>7.4f}{extra}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def compare_frames(a: np.ndarray, b: np.ndarray, with_lpips: bool = True) -> Comparison:
    """Compare uint8 frame stacks ``a`` and ``b`` (T, H, W, 3) over their common frames."""
    return compare_streams(FrameStream("A", iter(a)), FrameStream("B", iter(b)), with_lpips)


def compare_videos(
    path_a: Path,
    path_b: Path,
    with_lpips: bool = True,
    output: Path | None = None,
    metadata: dict[str, Any] | None = None,
    score: bool = True,
) -> Comparison:
    """Stream both videos (upright, one frame of each at a time) and compare B against A (``score``); with
    ``output`` also write A | B there (see :func:`side_by_side`, ``metadata`` embedded) in the same pass."""
    a, b = FrameStream("A", iter_upright(path_a)), FrameStream("B", iter_upright(path_b))
    if output is None:
        return compare_streams(a, b, with_lpips, score=score)
    with VideoWriter(output, stream_info(Path(path_a))[2] or 24.0, metadata) as writer:
        return compare_streams(a, b, with_lpips, lambda x, y: writer.write(joined(x, y)), score=score)


def side_by_side(path_a: Path, path_b: Path, output: Path, metadata: dict[str, Any] | None = None) -> Path:
    """One video of A (left) beside B (right, resized to A) over their common frames, at A's frame rate:
    the two always play in step. Streamed, and written atomically to ``output`` (with ``metadata``, e.g.
    its record)."""
    compare_videos(path_a, path_b, with_lpips=False, output=output, metadata=metadata, score=False)
    return Path(output)


def joined(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A | B as one frame (1, H, 2W, 3), cut to an even height as H.264 needs."""
    both = np.concatenate([a, b], axis=1)
    return both[None, : both.shape[0] - both.shape[0] % 2]


@dataclass
class FrameStream:
    """One side's frames, drawn one at a time: counts them and stops at damage after the first frame
    (the damage is noted; a file that gives no frame at all is an error)."""

    label: str
    frames: Iterator[np.ndarray]
    count: int = 0
    damage: str = ""

    def next(self) -> np.ndarray | None:
        if self.damage:
            return None
        try:
            frame = next(self.frames)
        except StopIteration:
            return None
        except ConfigError as exc:
            if self.count == 0:
                raise
            self.damage = f"{self.label} stops after {self.count} frames: {exc}"
            return None
        self.count += 1
        return frame

    def drain(self) -> int:
        """Count the frames left (decoded and dropped); returns the total."""
        while self.next() is not None:
            pass
        return self.count


def compare_streams(
    a: FrameStream,
    b: FrameStream,
    with_lpips: bool = True,
    on_pair: Callable[[np.ndarray, np.ndarray], object] | None = None,
    score: bool = True,
) -> Comparison:
    """Compare B against A pair by pair over their common frames (B resized to A's size per frame); memory
    holds one frame of each. ``on_pair`` sees each (A, resized B) pair."""
    frame_a, frame_b = a.next(), b.next()
    for stream, frame in ((a, frame_a), (b, frame_b)):
        if frame is None:
            raise ConfigError(f"video {stream.label} has no video frames")
    assert frame_a is not None and frame_b is not None
    (height, width), (b_height, b_width) = frame_a.shape[:2], frame_b.shape[:2]
    notes = []
    if (height, width) != (b_height, b_width):
        notes.append(
            f"sizes differ ({width}x{height} vs {b_width}x{b_height}): B resized to {width}x{height}"
        )
    reason = (lpips_unavailable_reason() if with_lpips else "not asked for") if score else None
    lpips_of = LpipsScorer() if score and reason is None else None
    result = Comparison(0, [], [], [] if lpips_of else None)
    while frame_a is not None and frame_b is not None:
        frame_b = resize_frame(frame_b, width, height)
        if score:
            result.psnr.append(psnr(frame_a, frame_b))
            result.ssim.append(ssim(frame_a, frame_b))
        if lpips_of is not None and result.lpips is not None:
            try:
                result.lpips.append(lpips_of(frame_a, frame_b))
            except Exception as exc:  # e.g. backbone weights cannot be downloaded offline
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                lpips_of, result.lpips = None, None
        if on_pair is not None:
            on_pair(frame_a, frame_b)
        result.frames += 1
        frame_a, frame_b = a.next(), b.next()
    pairs = result.frames
    if frame_a is not None or frame_b is not None:
        a.drain(), b.drain()
    if a.count != b.count:
        notes.insert(0, f"lengths differ ({a.count} vs {b.count} frames): compared the first {pairs}")
    notes += [stream.damage for stream in (a, b) if stream.damage]
    if reason is not None and score:
        notes.append(f"LPIPS unavailable: {reason}")
    result.notes[:0] = notes
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PSNR / SSIM (/ LPIPS) of video B against video A.")
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--json", type=Path, help="also write per-frame values and means here")
    args = parser.parse_args(argv)
    result = compare_videos(args.a, args.b)
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
