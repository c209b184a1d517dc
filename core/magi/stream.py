"""A MAGI-1 job's video written while it is made: the output file and the growing preview, both streamed.

Host memory stays flat in the number of chunks: each finished chunk goes straight to the output's
:class:`~core.video_io.VideoWriter` (atomic; ``<name>_partial.mp4`` on cancel or failure) and is encoded
once into a small preview segment; the preview shown after chunk ``k`` is the segments 1..k joined by
copying their packets (no decoding, no re-encoding, so early chunks lose no quality as the video grows).
The job's record and, for a continuation, the clip's sound are added at the end by a packet-copy remux.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.audio import add_record_and_audio
from core.encoders import X264, Encoder
from core.jobs import Job
from core.video_input import InputVideo, iter_resampled
from core.video_io import VideoWriter, partial_path_for, temp_path_for

PREVIEW_DIR = ".previews"
PREVIEW_MAX_AGE_S = 3600
PREVIEW_ENCODER = Encoder(X264, {"crf": "26", "preset": "ultrafast"})
"""ultrafast makes no B-frames, so every segment's packets come in presentation order."""


class StreamedVideo:
    """The output file at ``path``: the converted ``clip`` first when given, then the chunks as they come.

    :meth:`finish` commits it (or keeps it as ``<name>_partial.mp4``) and writes ``record`` into it, with
    the clip's sound under the clip part; :meth:`discard` drops it when no chunk was made."""

    def __init__(self, path: Path, fps: int, title: str, clip: InputVideo | None = None) -> None:
        self.path, self.title, self.clip = Path(path), title, clip
        self.writer = VideoWriter(self.path, fps, {"title": title})
        self.chunks = 0
        self.added_frames = 0
        if clip is not None:
            try:
                for frame in iter_resampled(clip):
                    self.writer.write(frame[None])
            except BaseException:
                self.writer.discard()
                raise

    @property
    def frames(self) -> int:
        return self.writer.frames_written

    def add(self, frames: np.ndarray) -> None:
        """Append one chunk's frames (uint8 ``[T, H, W, 3]``)."""
        self.writer.write(frames)
        self.chunks += 1
        self.added_frames += len(frames)

    def final_path(self, partial: bool) -> Path:
        return partial_path_for(self.path) if partial else self.path

    def finish(self, record: dict[str, Any], partial: bool) -> Path:
        """Close the file (as ``final_path(partial)``) and embed ``record`` (which notes a failed remux:
        the file then stays silent, without it); returns its path."""
        path = self.writer.keep_partial() if partial else self.writer.commit()
        assert path is not None
        with_audio = self.clip is not None and self.clip.has_audio
        source = self.clip.path if with_audio else path
        duration = self.clip.duration if with_audio else None
        add_record_and_audio(path, source, record, duration, {"title": self.title})
        return path

    def discard(self) -> None:
        self.writer.discard()


class ChunkPreview:
    """A playable mp4 of the chunks made so far, after each: ``<job id>-<k>.mp4`` in ``folder`` for chunk
    ``k`` (a new name each time, so the UI sees a new video). Older previews are deleted as new ones come;
    the last one stays until a later job sweeps previews older than an hour (the UI may still be fetching
    it when the job ends)."""

    def __init__(self, folder: Path, fps: int, job: Job) -> None:
        self.folder, self.fps, self.job = Path(folder), fps, job
        self.count = 0
        self._sweep()

    def path(self, count: int) -> Path:
        return self.folder / f"{self.job.id}-{count}.mp4"

    def segment(self, count: int) -> Path:
        return self.folder / f"{self.job.id}-segment-{count}.mp4"

    def add(self, frames: np.ndarray) -> None:
        """Encode chunk ``frames`` (uint8) as the next segment, join the segments and show the result."""
        self.count += 1
        with VideoWriter(self.segment(self.count), self.fps, encoder=PREVIEW_ENCODER) as writer:
            writer.write(frames)
        join_segments([self.segment(k) for k in range(1, self.count + 1)], self.path(self.count))
        self.job.show_preview(str(self.path(self.count)))
        self.path(self.count - 2).unlink(missing_ok=True)

    def close(self) -> None:
        """Delete the segments and the previews but the last one."""
        self.path(self.count - 1).unlink(missing_ok=True)
        for count in range(1, self.count + 1):
            self.segment(count).unlink(missing_ok=True)

    def _sweep(self) -> None:
        sweep_previews(self.folder)


def sweep_previews(folder: Path) -> None:
    """Delete the previews in ``folder`` older than an hour."""
    if folder.is_dir():
        for old in folder.glob("*.mp4"):
            if time.time() - old.stat().st_mtime > PREVIEW_MAX_AGE_S:
                old.unlink(missing_ok=True)


def join_segments(segments: list[Path], target: Path) -> Path:
    """Write ``segments`` (mp4s encoded alike, without B-frames) one after the other into ``target`` by
    copying their packets, shifting each segment's timestamps past the previous one; atomic."""
    temp = temp_path_for(target)
    try:
        with av.open(str(temp), mode="w", format="mp4") as out:
            stream, offset = None, 0
            for segment in segments:
                with av.open(str(segment)) as source:
                    video = source.streams.video[0]
                    if stream is None:
                        stream = out.add_stream_from_template(video)
                    end = offset
                    for packet in source.demux(video):
                        if packet.dts is None:
                            continue
                        packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                        end = max(end, packet.pts + packet.duration)
                        packet.stream = stream
                        out.mux(packet)
                    offset = end
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target
