"""Audio tracks through PyAV: put the sound of one file under the picture of another, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import av

AUDIO_CODEC = "aac"


def has_audio(path: Path) -> bool:
    """Whether ``path`` holds at least one audio stream."""
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def mux_audio(video: Path, audio_source: Path, output: Path, duration: float | None = None) -> Path:
    """Write ``output``: the video stream of ``video`` copied as is, with the first audio stream of
    ``audio_source`` re-encoded to AAC and cut at ``duration`` seconds. ``video``'s container metadata is
    kept; ``output`` appears only once complete."""
    output = Path(output)
    temp = output.with_name(f".{output.stem}.audio.part{output.suffix}")
    try:
        with (
            av.open(str(video)) as picture,
            av.open(str(audio_source)) as sound,
            av.open(str(temp), mode="w", format="mp4", options={"movflags": "use_metadata_tags"}) as out,
        ):
            out.metadata.update(picture.metadata)
            video_in = picture.streams.video[0]
            video_out = out.add_stream_from_template(video_in)
            audio_in = sound.streams.audio[0]
            rate = audio_in.codec_context.sample_rate or 48000
            audio_out = out.add_stream(AUDIO_CODEC, rate=rate)
            layout = audio_in.codec_context.layout
            audio_out.layout = layout.name if layout else "stereo"
            _copy_video(picture, video_in, out, video_out)
            _encode_audio(sound, audio_in, out, audio_out, duration)
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)
    return output


def _copy_video(
    source: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    out: av.container.OutputContainer,
    target: av.video.stream.VideoStream,
) -> None:
    for packet in source.demux(stream):
        if packet.dts is None:
            continue
        packet.stream = target
        out.mux(packet)


def _encode_audio(
    source: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    out: av.container.OutputContainer,
    target: av.audio.stream.AudioStream,
    duration: float | None,
) -> None:
    resampler = av.AudioResampler(format="fltp", layout=target.layout.name, rate=target.rate)
    written = 0
    limit = None if duration is None else round(duration * target.rate)
    for frame in source.decode(stream):
        if limit is not None and written >= limit:
            break
        for converted in resampler.resample(frame):
            converted.pts = written
            written += converted.samples
            out.mux(target.encode(converted))
    out.mux(target.encode(None))
