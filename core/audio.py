"""Audio tracks through PyAV: put the sound of one file under the picture of another, written atomically."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av

from core.video_io import METADATA_KEY

log = logging.getLogger(__name__)

AUDIO_CODEC = "aac"
MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}
"""Audio codecs an mp4 container takes as they are (copied without re-encoding)."""
REMUX_ERRORS = (av.FFmpegError, OSError, ValueError)


def remux_with_audio(
    video: Path, source: Path, metadata: dict[str, Any] | None = None, duration: float | None = None
) -> bool:
    """Rewrite ``video`` in place (video packets copied) with the first audio track of ``source`` added —
    kept as is when mp4 takes its codec, else encoded to AAC — and ``metadata`` merged into the container's.
    With ``duration`` (seconds) the audio stops there (to the packet), as for a partial file.
    Returns whether audio was added."""
    video = Path(video)
    with _rewrite(video, source, video) as (picture, sound, output):
        for key, value in (metadata or {}).items():
            output.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        in_video = picture.streams.video[0]
        out_video = output.add_stream_from_template(in_video)
        in_audio = sound.streams.audio[0] if sound.streams.audio else None
        copy_audio = in_audio is not None and in_audio.codec_context.name in MP4_AUDIO_CODECS
        out_audio = None
        if in_audio is not None:
            out_audio = (
                output.add_stream_from_template(in_audio)
                if copy_audio
                else output.add_stream(AUDIO_CODEC, rate=in_audio.codec_context.sample_rate or 48000)
            )
        _copy_packets(picture.demux(in_video), out_video, output)
        if in_audio is not None and copy_audio:
            _copy_packets(_until(sound.demux(in_audio), duration), out_audio, output)
        elif in_audio is not None:
            for frame in _until(sound.decode(in_audio), duration):
                frame.pts = None
                output.mux(out_audio.encode(frame))
            output.mux(out_audio.encode(None))
    return in_audio is not None


def add_record_and_audio(
    video: Path,
    source: Path,
    record: dict[str, Any],
    duration: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """:func:`remux_with_audio` of a finished ``video`` with ``record`` (and ``metadata``) in its metadata.
    Should that fail, ``video`` stays as it was, silent, and ``record`` says why (``audio`` False,
    ``audio_error``): the caller keeps it as the result and still writes the sidecar."""
    try:
        remux_with_audio(video, source, {METADATA_KEY: record} | (metadata or {}), duration)
    except REMUX_ERRORS as exc:
        log.warning("kept %s without the sound of %s: %s", video, source, exc)
        record |= {"audio": False, "audio_error": str(exc)}


@contextmanager
def _rewrite(
    video: Path, audio_source: Path, output: Path
) -> Iterator[tuple[av.container.InputContainer, av.container.InputContainer, av.container.OutputContainer]]:
    """Open ``video`` and ``audio_source`` and a temporary mp4 next to ``output`` that starts with
    ``video``'s container metadata; once the caller's block ends without error it replaces ``output``."""
    temp = output.with_name(f".{output.stem}.audio.part{output.suffix}")
    try:
        with (
            av.open(str(video)) as picture,
            av.open(str(audio_source)) as sound,
            av.open(str(temp), mode="w", format="mp4", options={"movflags": "use_metadata_tags"}) as out,
        ):
            out.metadata.update(picture.metadata)
            yield picture, sound, out
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)


def _until(items: Iterable[Any], duration: float | None) -> Iterator[Any]:
    """Packets or frames up to the first that starts at or after ``duration`` seconds (all when None)."""
    for item in items:
        if duration is not None and item.pts is not None and item.pts * item.time_base >= duration:
            return
        yield item


def _copy_packets(packets: Iterable[av.Packet], stream: Any, out: av.container.OutputContainer) -> None:
    for packet in packets:
        if packet.dts is None:
            continue
        packet.stream = stream
        out.mux(packet)
