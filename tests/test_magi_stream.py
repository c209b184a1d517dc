"""MAGI-1 jobs stream: chunks go to the output file and the preview as they finish, none is kept in
memory (generate's keep_frames=False), so host memory stays flat in the number of chunks."""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import torch

from core.jobs import Job
from core.magi.generate import generate
from core.magi.stream import PREVIEW_ENCODER, StreamedVideo, join_segments
from core.tasks import parse_request
from core.video_input import open_input
from core.video_io import VideoWriter, probe_video, read_frames, read_record
from weights.registry import get_card

pytest_plugins = ["tests.conftest_magi_app"]


def t2v(**fields):
    return parse_request({"task": "t2v", "model": "tiny-magi", "prompt": "a cat runs"} | fields)


def test_generate_without_keeping_frames_returns_none_and_frees_each_chunk(runner):
    models = runner.models.get(get_card("tiny-magi"), runner.settings.models_dir / "tiny-magi")
    caption, mask = models.captions("a cat runs", 3)
    kept: list[weakref.ref] = []
    alive_at_chunk: list[int] = []

    def on_chunk(index: int, frames: torch.Tensor) -> None:
        gc.collect()
        alive_at_chunk.append(sum(ref() is not None for ref in kept))
        kept.append(weakref.ref(frames))

    common = dict(num_chunks=3, width=64, height=64, steps=4, guidance=1.0, seed=3, window_size=2)
    result = generate(
        models.dit, models.vae, caption, mask, on_chunk=on_chunk, keep_frames=False, run=models.run, **common
    )
    assert result is None and len(kept) == 3
    assert alive_at_chunk == [0, 0, 0]  # no earlier chunk is held anywhere once on_chunk returned
    whole = generate(models.dit, models.vae, caption, mask, run=models.run, **common)
    assert whole.shape == (72, 64, 64, 3)


def test_the_streamed_job_file_has_every_chunk_and_memory_stays_flat(runner):
    runner.execute(Job(t2v(chunks=1, seed=4)))  # load the models before measuring
    peaks, records = {}, {}
    for chunks in (1, 5):
        tracemalloc.start()
        records[chunks] = runner.execute(Job(t2v(chunks=chunks, seed=4)))
        peaks[chunks] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    path = Path(records[5]["path"])
    assert probe_video(path).frames == 5 * 24 and read_record(path)["frames"] == 5 * 24
    assert records[5]["chunks_done"] == 5
    chunk_bytes = 24 * 64 * 64 * 3
    assert peaks[5] - peaks[1] < chunk_bytes, peaks  # four more chunks, less than one more chunk held
    previews = runner.settings.outputs_dir / ".previews"
    assert not list(previews.glob("*segment*"))  # the preview's segments are cleaned up


def test_joined_segments_play_as_one_video(tmp_path):
    frames = [torch.full((24, 32, 48, 3), 40 * k, dtype=torch.uint8).numpy() for k in range(1, 4)]
    segments = []
    for k, chunk in enumerate(frames):
        with VideoWriter(tmp_path / f"s{k}.mp4", 24, encoder=PREVIEW_ENCODER) as writer:
            writer.write(chunk)
        segments.append(tmp_path / f"s{k}.mp4")
    joined = join_segments(segments, tmp_path / "joined.mp4")
    info = probe_video(joined)
    assert (info.frames, info.width, info.height, info.fps) == (72, 48, 32, 24.0)
    means = read_frames(joined).reshape(3, 24, -1).mean(axis=2)
    assert abs(means - torch.tensor([[40.0], [80.0], [120.0]]).numpy()).max() < 3


def test_previews_made_in_a_worker_process_reach_the_app(tmp_path):
    from core.parallel.pool import WorkerPool
    from core.settings import Settings
    from tests.fake_preview_worker import preview_executor

    class Watched(Job):
        def __init__(self, request) -> None:
            super().__init__(request)
            self.previews: list[str] = []

        def show_preview(self, path: str) -> None:
            self.previews.append(path)
            super().show_preview(path)

    pool = WorkerPool(Settings(outputs_dir=tmp_path), [None], make_executor=preview_executor)
    try:
        job = Watched({})
        (execute,) = pool.executors()
        assert execute(job) == {"status": "done"}
    finally:
        pool.shutdown()
    assert job.previews == [str(tmp_path / f"{job.id}-{count}.mp4") for count in (1, 2)]
    assert job.preview == job.previews[-1] and job.progress.step == 2


def test_a_failed_remux_keeps_the_streamed_file_and_notes_it(
    clip_with_sound: Path, tmp_path: Path, failing_remux: None
) -> None:
    clip = open_input(clip_with_sound, get_card("tiny-magi"))
    output = StreamedVideo(tmp_path / "out.mp4", clip.fps, "a cat", clip)
    output.add(np.zeros((24, clip.height, clip.width, 3), np.uint8))
    record = {"task": "continue", "audio": True}
    path = output.finish(record, partial=False)
    assert path == tmp_path / "out.mp4" and probe_video(path).frames == clip.frames + 24
    assert record["audio"] is False and "Input/output error" in record["audio_error"]
