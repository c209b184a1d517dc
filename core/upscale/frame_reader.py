"""Read a video's frames ahead on a background thread into a bounded buffer (never the whole video)."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from core.video_input import stream_info, timed_frames

_DONE = object()


@dataclass(frozen=True)
class SourceInfo:
    frames: int
    width: int
    height: int
    fps: float
    has_audio: bool


def probe_source(path: Path) -> SourceInfo:
    """Upright size (phone clips carry a rotation), fps, audio and frame count (from the header, else by
    counting packets); decodes only the first frame, for its rotation."""
    width, height, fps, has_audio, rotation = stream_info(Path(path))
    if rotation in (90, 270):
        width, height = height, width
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    return SourceInfo(frames, width, height, fps or 30.0, has_audio)


class FrameReader:
    """Iterate decoded RGB frames (after ``transform``) with at most ``buffer`` frames decoded ahead.
    Each frame's time (seconds from the first) waits in :attr:`times` until :meth:`take_times` hands it
    to the writer: a variable frame rate survives the model. A file damaged part way raises the reader's
    ConfigError ("damaged after N frames") once the frames before the damage were read."""

    def __init__(
        self, path: Path, transform: Callable[[np.ndarray], np.ndarray] | None = None, buffer: int = 16
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        self._queue: queue.Queue[object] = queue.Queue(maxsize=buffer)
        self._stop = threading.Event()
        self.times: deque[float] = deque()
        self._last: float | None = None
        self._thread = threading.Thread(target=self._decode, name="frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        try:
            for time, image in timed_frames(self.path):
                if self.transform is not None:
                    image = self.transform(image)
                self.times.append(time)
                if not self._put(image):
                    return
        except Exception as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]

    def take_times(self, count: int, fps: float) -> list[float]:
        """The times of the next ``count`` output frames: the source's, then (for padding past the end)
        one ``1/fps`` step after another."""
        taken = []
        for _ in range(count):
            if self.times:
                self._last = self.times.popleft()
            else:
                self._last = 0.0 if self._last is None else self._last + 1.0 / fps
            taken.append(self._last)
        return taken

    def close(self) -> None:
        """Stop decoding and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
