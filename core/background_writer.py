"""Encode frames on a thread of their own while the caller makes the next ones (the VAE decode)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

Frames = Callable[[], np.ndarray]
"""Hands over one batch of frames (T, H, W, 3) when called on the writer's thread (it may wait for a
GPU copy to land first)."""
MAX_PENDING = 8
"""Batches waiting for the encoder at most (a 480p latent frame's 4 frames are 4.8 MB)."""
_DONE = None


class BackgroundWriter:
    """Feed ``sink`` (e.g. ``VideoWriter.write``) from a thread: :meth:`put` queues a batch and returns at
    once (waiting only while ``MAX_PENDING`` are queued); :meth:`close` waits until every queued batch is
    written. An error of ``sink`` stops the writing and is raised by the next :meth:`put` or :meth:`close`.
    ``busy_s``: seconds the thread spent writing."""

    def __init__(self, sink: Callable[[np.ndarray], None], max_pending: int = MAX_PENDING) -> None:
        self.sink = sink
        self.busy_s = 0.0
        self._queue: queue.Queue[Frames | None] = queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is not None:
                continue  # keep taking batches so put() never blocks on a dead writer
            started = time.perf_counter()
            try:
                self.sink(item())
            except BaseException as error:  # handed to the caller's thread
                self._error = error
            self.busy_s += time.perf_counter() - started

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, frames: Frames) -> None:
        self._raise()
        self._queue.put(frames)

    def close(self) -> None:
        """Wait for every queued batch to be written (also after an error); then raise the error if any."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def close_quietly(self) -> None:
        """:meth:`close` for a caller that is already failing: waits for the thread, raises nothing."""
        with contextlib.suppress(Exception):
            self.close()
