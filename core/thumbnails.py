"""Small jpg thumbnails of result videos (a frame of each), made when first asked for and cached under
``<outputs>/.studio/thumbs`` (a new file when the video changes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
from PIL import Image

from core.outputs import slug
from core.video_input import upright_rgb

THUMB_WIDTH = 192


def thumbnail(outputs_dir: Path, video: Path) -> Path | None:
    """The cached thumbnail of ``video`` (its first frame, ``THUMB_WIDTH`` wide), made now if missing;
    None when the video cannot be read."""
    stat = video.stat()
    key = hashlib.sha1(f"{video.resolve()}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()[:12]
    path = Path(outputs_dir) / ".studio" / "thumbs" / f"{slug(video.stem, 40)}-{key}.jpg"
    if path.is_file():
        return path
    try:
        with av.open(str(video)) as container:
            frame = next(container.decode(container.streams.video[0]))
    except (av.FFmpegError, OSError, IndexError, StopIteration):
        return None
    picture = Image.fromarray(upright_rgb(frame))
    height = max(1, round(picture.height * THUMB_WIDTH / picture.width))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.resize((THUMB_WIDTH, height)).save(path, quality=80)
    return path
