"""Compare two videos frame by frame: PSNR and SSIM (scikit-image), LPIPS where its backbone is available.

Identical frames have an infinite PSNR; we report :data:`MAX_PSNR` (100 dB) instead so averages, JSON
and plots stay finite. Videos of different sizes or lengths are compared over their common frames after
resizing B to A's size; :attr:`Comparison.notes` says when that happened.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from core.video_io import probe_video, read_frames, write_video

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


def lpips_per_frame(a: np.ndarray, b: np.ndarray) -> list[float]:
    """LPIPS (AlexNet) per frame pair; call only when :func:`lpips_unavailable_reason` is None."""
    import lpips
    import torch

    model = lpips.LPIPS(net="alex", verbose=False)

    def tensor(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    with torch.no_grad():
        return [float(v) for v in model(tensor(a), tensor(b)).flatten()]


def match_to(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``other`` (T, H, W, 3) uint8 resized to ``reference``'s frame size."""
    if other.shape[1:] == reference.shape[1:]:
        return other
    resized = resize(
        other, (other.shape[0], *reference.shape[1:]), order=1, anti_aliasing=True, preserve_range=True
    )
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


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
    notes = []
    count = min(len(a), len(b))
    if len(a) != len(b):
        notes.append(f"lengths differ ({len(a)} vs {len(b)} frames): compared the first {count}")
    if a.shape[1:] != b.shape[1:]:
        notes.append(
            f"sizes differ ({a.shape[2]}x{a.shape[1]} vs {b.shape[2]}x{b.shape[1]}): "
            f"B resized to {a.shape[2]}x{a.shape[1]}"
        )
    a, b = a[:count], match_to(a, b[:count])
    pairs = list(zip(a, b, strict=True))
    result = Comparison(count, [psnr(x, y) for x, y in pairs], [ssim(x, y) for x, y in pairs])
    reason = lpips_unavailable_reason() if with_lpips else "not asked for"
    if reason is None:
        try:
            result.lpips = lpips_per_frame(a, b)
        except Exception as exc:  # e.g. backbone weights cannot be downloaded offline
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    if reason is not None:
        result.notes.append(f"LPIPS unavailable: {reason}")
    result.notes[:0] = notes
    return result


def compare_videos(path_a: Path, path_b: Path, with_lpips: bool = True) -> Comparison:
    """Decode both videos and compare B against A."""
    return compare_frames(read_frames(Path(path_a)), read_frames(Path(path_b)), with_lpips)


def side_by_side(path_a: Path, path_b: Path, output: Path, metadata: dict[str, Any] | None = None) -> Path:
    """One video of A (left) beside B (right, resized to A) over their common frames, at A's frame rate:
    the two always play in step. Written atomically to ``output`` (with ``metadata``, e.g. its record)."""
    a, b = read_frames(Path(path_a)), read_frames(Path(path_b))
    count = min(len(a), len(b))
    frames = np.concatenate([a[:count], match_to(a, b[:count])], axis=2)
    return write_video(output, frames, probe_video(Path(path_a)).fps or 24.0, metadata)


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
