"""One frame of a finished video as a picture: "use the last frame as the next start image"."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

from core.outputs import slug
from core.validation import ConfigError
from core.video_input import upright_rgb


def extract_frame(video: str | Path, folder: Path, index: int = -1) -> Path:
    """Save frame ``index`` of ``video`` (negative: from the end; -1 the last) upright as a PNG in
    ``folder`` and return its path. Decodes the video once, keeping only the frames it may need."""
    video = Path(video)
    if not video.is_file():
        raise ConfigError("Make or choose a video first.")
    keep = -index if index < 0 else 1
    recent: list[av.VideoFrame] = []
    try:
        with av.open(str(video)) as container:
            for number, frame in enumerate(container.decode(container.streams.video[0])):
                if index >= 0 and number == index:
                    recent = [frame]
                    break
                if index < 0:
                    recent = [*recent[-keep + 1 :], frame] if keep > 1 else [frame]
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise ConfigError(f"{video.name} cannot be read as a video ({exc})") from None
    if not recent or (index < 0 and len(recent) < keep):
        raise ConfigError(f"{video.name} has no frame {index}")
    chosen = recent[0]
    folder.mkdir(parents=True, exist_ok=True)
    label = "last" if index == -1 else f"frame{index}"
    path = folder / f"{slug(video.stem, 60)}_{label}.png"
    Image.fromarray(upright_rgb(chosen)).save(path)
    return path
