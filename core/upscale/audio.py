"""Carry the input video's audio over to the upscaled file (PyAV remux, no video re-encode).

main has no shared ``core/audio.py`` yet; once it lands this module can defer to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import av

MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}


def has_audio(path: Path) -> bool:
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def remux_with_audio(video: Path, source: Path, metadata: dict[str, Any] | None = None) -> bool:
    """Rewrite ``video`` in place (video packets copied) with the first audio track of ``source`` added —
    kept as is when mp4 takes its codec, else encoded to AAC — and ``metadata`` merged into the container's.
    Returns whether audio was added."""
    video, source = Path(video), Path(source)
    temp = video.with_name(f".{video.stem}.audio.part{video.suffix}")
    try:
        with (
            av.open(str(video)) as picture,
            av.open(str(source)) as sound,
            av.open(str(temp), mode="w", format="mp4", options={"movflags": "use_metadata_tags"}) as output,
        ):
            output.metadata.update(picture.metadata)
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
                    else output.add_stream("aac", rate=in_audio.codec_context.sample_rate or 48000)
                )
            _copy_packets(picture.demux(in_video), out_video, output)
            if in_audio is not None and copy_audio:
                _copy_packets(sound.demux(in_audio), out_audio, output)
            elif in_audio is not None:
                for frame in sound.decode(in_audio):
                    frame.pts = None
                    output.mux(out_audio.encode(frame))
                output.mux(out_audio.encode(None))
        os.replace(temp, video)
    finally:
        temp.unlink(missing_ok=True)
    return in_audio is not None


def _copy_packets(packets: Any, stream: Any, output: av.container.OutputContainer) -> None:
    for packet in packets:
        if packet.dts is not None:
            packet.stream = stream
            output.mux(packet)
