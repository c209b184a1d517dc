"""The mp4 write left after the last decoded frame (the job's ``write`` stage), per libx264 setting.

Feeds 81 frames of 832x480 to :class:`core.video_io.VideoWriter` through :class:`BackgroundWriter` at the
pace the streamed VAE decode hands them over (1 frame, then 4 per latent frame; ``--decode-s`` for the
whole video), then times ``close`` (the encoder draining its lookahead and frame threads, the file moved
in place). The frames are a synthetic moving scene (gradients, a moving disc, fine texture), so the
encoder has motion to search. Per row: the tail, the encoder's total busy time, the file size and the
PSNR of the decoded file against the frames fed (x264's loss at that setting).

    python3 bench/write_speed.py --json $OUT/write.json     # CPU only: seconds on the GPU machine's cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.background_writer import BackgroundWriter  # noqa: E402
from core.encoders import X264, Encoder  # noqa: E402
from core.video_io import VideoWriter, read_frames  # noqa: E402

ROWS = {
    "medium": {"preset": "medium"},
    "medium-lookahead10": {"preset": "medium", "x264-params": "rc-lookahead=10"},
    "medium-lookahead10-sync0": {"preset": "medium", "x264-params": "rc-lookahead=10:sync-lookahead=0"},
    "fast": {"preset": "fast"},
    "faster": {"preset": "faster"},
    "veryfast": {"preset": "veryfast"},
}


def scene(frames: int, width: int, height: int, noise: int) -> np.ndarray:
    """A moving test scene (T, H, W, 3) uint8: colour gradients, a disc crossing, static fine texture and
    ``noise`` levels of fresh noise per frame (random-weight decoders' output is close to noise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 24, (height, width), dtype=np.uint8).astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        shift = 3.0 * t
        red = 128 + 100 * np.sin((x + shift) / 60.0)
        green = 128 + 100 * np.cos((y - shift / 2) / 45.0)
        blue = 255.0 * (x / width) * (1 - t / frames)
        disc = ((x - (100 + 7 * t)) ** 2 + (y - height / 2) ** 2) < 60.0**2
        frame = np.stack([red, green, blue], -1) + texture[..., None]
        if noise:
            frame += rng.integers(0, noise, frame.shape).astype(np.float32)
        frame[disc] = (240, 230, 40)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse else float("inf")


def run_row(name: str, options: dict[str, str], video: np.ndarray, decode_s: float, folder: Path) -> dict:
    path = folder / f"{name}.mp4"
    writer = VideoWriter(path, 16, encoder=Encoder(X264, {"crf": "18", **options}))
    background = BackgroundWriter(writer.write)
    batches = [video[:1]] + [video[i : i + 4] for i in range(1, len(video), 4)]
    pause = decode_s / len(batches)
    start = time.perf_counter()
    for batch in batches:
        time.sleep(pause)  # the decode of the next latent frame
        background.put(lambda batch=batch: batch)
    fed = time.perf_counter()
    background.close()
    writer.commit()
    tail = time.perf_counter() - fed
    decoded = read_frames(path)
    row = {
        "row": name,
        "options": options,
        "tail_s": round(tail, 3),
        "job_s": round(time.perf_counter() - start, 3),
        "busy_s": round(background.busy_s, 3),
        "mb": round(path.stat().st_size / 1e6, 2),
        "psnr_db": round(psnr(np.asarray(decoded), video), 2),
    }
    print(
        f"{name:26s} tail {row['tail_s']:.3f} s  busy {row['busy_s']:.2f} s  {row['mb']:.2f} MB  "
        f"PSNR {row['psnr_db']:.2f} dB",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument(
        "--decode-s", type=float, default=1.7, help="the decode's seconds for the whole video"
    )
    parser.add_argument("--noise", type=int, default=0, help="levels of fresh noise per frame (e.g. 64)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    video = scene(args.frames, width, height, args.noise)
    print(
        f"{os.cpu_count()} CPU cores, {args.frames} frames {width}x{height}, "
        f"decode {args.decode_s} s, noise {args.noise}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_row(name, ROWS[name], video, args.decode_s, Path(tmp)) for name in args.rows.split(",")]
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cores": os.cpu_count(), "noise": args.noise, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
