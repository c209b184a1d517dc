"""What split ranks share besides the DiT: the prompt encoded once on rank 0, the decode split in bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from core.jobs import Job
from core.parallel.planner import plan_parallel
from core.parallel.split import SplitGroup
from core.parallel.split_decode import Band, band_plan, blend, decode_bands, split_decode
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import generate_t2v

pytest_plugins = ["tests.conftest_parallel"]

WIDE = {"model": "tiny-wan", "prompt": "a red car on a street", "steps": 2, "seed": 3, "frames": 5}
WIDE |= {"width": 320, "height": 192}


def test_bands_split_the_longer_side_and_skip_frames_too_small_to_gain() -> None:
    assert band_plan((1, 16, 21, 60, 104), 2) == [Band(-1, 0, 56), Band(-1, 48, 104)]
    assert [b.size for b in band_plan((1, 16, 21, 60, 104), 4)] == [30, 34, 34, 30]
    assert band_plan((1, 16, 21, 104, 60), 2)[0].axis == -2
    assert band_plan((1, 16, 2, 6, 8), 2) is None, "each band would be the whole frame"
    assert band_plan((1, 16, 21, 60, 104), 1) is None


def test_blend_weights_sum_to_one_across_every_overlap() -> None:
    latents = torch.zeros(1, 1, 1, 2, 40)
    bands = band_plan(tuple(latents.shape), 3)

    def decode(z: torch.Tensor) -> torch.Tensor:  # a constant image, 8 pixels a latent cell
        return torch.full((1, 3, 1, 16, z.shape[-1] * 8), 0.5)

    out = decode_bands(decode, latents, bands)
    assert out.shape == (1, 3, 1, 16, 320)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-6)
    ramp = blend([torch.zeros(1, 1, 1, 1, 8 * b.size) + i for i, b in enumerate(bands)], bands, 40)
    assert torch.all(ramp[..., 1:] >= ramp[..., :-1]), "a cross-fade, no jumps back"


def test_banded_decode_is_as_close_to_the_whole_frame_as_diffusers_tiling() -> None:
    """With the tiny random VAE the bands differ from one whole-frame decode about as much as diffusers'
    own tiled decode does (the decoder's mid-block attention sees the band); real weights must be checked
    on GPUs (bench/multigpu.py compares the frames)."""
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    latents = torch.randn(1, 16, 3, 24, 40)
    with torch.no_grad():
        whole = vae.decode(latents).sample
        bands = decode_bands(lambda z: vae.decode(z).sample, latents, band_plan(tuple(latents.shape), 2))
        vae.enable_tiling(192, 192, 128, 128)
        tiled = vae.decode(latents).sample
    assert bands.shape == whole.shape == (1, 3, 9, 192, 320)
    assert (bands - whole).abs().mean() <= (tiled - whole).abs().mean()
    assert (bands - whole).abs().max() <= 1.2 * (tiled - whole).abs().max()


@pytest.fixture(scope="module")
def one_process(parallel_settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """WIDE in one process: the whole-frame decode, and the same latents decoded in two bands."""
    request = parse_request(WIDE)
    pipe = Runner(parallel_settings, torch.device("cpu")).models.get(
        request.card, parallel_settings.models_dir / "tiny-wan"
    )
    whole = generate_t2v(pipe, request, Job(request))
    with split_decode(pipe, ranks=2) as done:
        banded = generate_t2v(pipe, request, Job(request))
    assert done["bands"] == 2 and done["axis"] == "width" and done["seconds"] > 0
    return whole, banded


def test_split_ranks_encode_the_prompt_once_and_decode_a_band_each(
    split_group: SplitGroup, one_process: tuple[np.ndarray, np.ndarray]
) -> None:
    whole, banded = one_process
    job = Job(parse_request(WIDE))
    record = split_group.run(job, job.request, ("cfg",))
    assert record["split_work"] == {"text_encoder_ranks": [0]}
    assert record["decode"]["bands"] == 2 and "in 2 bands over the ranks" in record["decode"]["reason"]
    assert set(record["stages"]) == {"text", "denoise", "decode"} and record["stages"]["decode"] > 0
    frames = np.load(Path(record["path"]).with_suffix(".npy"))
    assert frames.shape == whole.shape == (5, 192, 320, 3)
    assert np.abs(frames - banded).max() <= 1e-6, "the gathered bands are the one-process banded decode"
    assert np.abs(frames - whole).mean() < 0.01


def test_a_cfg_free_job_splits_by_context_parallel_with_the_prompt_from_rank_0(
    split_group: SplitGroup, parallel_settings: Settings
) -> None:
    request = parse_request(WIDE | {"guidance": 1.0, "width": 64, "height": 48})
    plan = plan_parallel(1, 2, request, min_tokens=0)
    assert plan.modes == ("ulysses",)
    pipe = Runner(parallel_settings, torch.device("cpu")).models.get(
        request.card, parallel_settings.models_dir / "tiny-wan"
    )
    reference = generate_t2v(pipe, request, Job(request))
    job = Job(request)
    record = split_group.run(job, request, plan.modes)
    assert record["parallel"]["ulysses"] == 2 and record["split_work"]["text_encoder_ranks"] == [0]
    assert record["decode"]["bands"] == 1 and "whole on every rank" in record["decode"]["reason"]
    frames = np.load(Path(record["path"]).with_suffix(".npy"))
    assert np.abs(frames - reference).max() <= 1e-5
