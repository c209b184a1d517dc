"""Fixtures for the parallel tests: a warm 2-rank gloo split group and a CPU stand-in for ring attention."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from core.settings import Settings


def _cpu_attention_with_lse(
    ctx,
    query,
    key,
    value,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
    return_lse=False,
    _save_ctx=True,
    _parallel_config=None,
):
    """diffusers' native attention op, plus the log-sum-exp ring attention merges chunks with.

    Stand-in: on the CPU no diffusers backend returns the LSE (native raises, ``_native_flash`` calls
    ``aten::_scaled_dot_product_flash_attention``, which has no CPU kernel); torch's CPU flash kernel does.
    """
    q, k, v = (x.permute(0, 2, 1, 3) for x in (query, key, value))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)
    out = out.permute(0, 2, 1, 3)
    return (out, lse.permute(0, 2, 1)) if return_lse else out


def _write_video_and_frames(path: Path, frames, fps, metadata=None):
    """``write_video`` that also keeps the raw frames next to the mp4.

    x264 output is not bit-exact from run to run, so the tests compare frames, not decoded video.
    """
    import numpy as np

    from core.video_io import write_video

    written = write_video(path, frames, fps, metadata)
    np.save(Path(path).with_suffix(".npy"), frames)
    return written


SIMULATED_OOM = re.compile(r"\[oom on rank (\d+) below level (\d+)\]")


def _with_simulated_oom(run_on_rank):
    """``run_on_rank`` that, for a prompt with ``[oom on rank R below level L]``, makes rank R run out of
    memory right after denoising step 1 while it runs below memory level L (its peers go on into the
    step's collectives, as a real out-of-memory rank would leave them)."""

    def run(job, task, settings, pipelines):
        found = SIMULATED_OOM.search(task.request.prompt)
        rank, below = (int(n) for n in found.groups()) if found else (-1, 0)
        if torch.distributed.get_rank() == rank and task.memory_level < below:
            report = job.report

            def report_then_fail(stage: str, step: int = 0, total: int = 0, detail: str = "") -> None:
                report(stage, step, total, detail)
                if stage == "denoising" and step == 1:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

            job.report = report_then_fail
        return run_on_rank(job, task, settings, pipelines)

    return run


def rank_setup_for_tests() -> None:
    """Each test rank: one thread (2 ranks on 2 cores), the ring stand-in, the frame probe and the
    simulated out-of-memory error."""
    from diffusers.models import attention_dispatch

    from core.parallel import split_rank
    from core.tasks import wan_output

    torch.set_num_threads(1)
    attention_dispatch._native_attention_forward_op = _cpu_attention_with_lse
    wan_output.write_video = _write_video_and_frames
    split_rank.run_on_rank = _with_simulated_oom(split_rank.run_on_rank)


@pytest.fixture(scope="session")
def parallel_settings(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        outputs_dir=tmp_path_factory.mktemp("parallel") / "outputs",
        models_dir=models_dir,
        offline=True,
        dev=True,
    )


@pytest.fixture(scope="session")
def split_group(parallel_settings: Settings) -> Iterator:
    """Two gloo ranks, started once for the session (each spawn imports torch and diffusers)."""
    from core.parallel.split import SplitGroup

    group = SplitGroup(parallel_settings, 2, rank_setup=rank_setup_for_tests)
    group.start()
    try:
        yield group
    finally:
        group.close()
