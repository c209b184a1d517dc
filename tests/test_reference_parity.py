"""Behaviours pinned to the authors' code (issue 30): TeaCache decisions, MAGI-1 caption cleaning and the
latents it decodes after a prefix, FlashVSR's noise draw and its draft-mask precision.

The golden values in ``tests/data/reference/`` were made once by ``tests/tools/make_reference_goldens.py``
from the reference repositories (commits named there and in each file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.register_assert_rewrite("tests.conftest_magi")

from core.caches.criterion import ReuseDecision  # noqa: E402
from core.magi.caption_clean import clean_caption  # noqa: E402
from core.magi.generate import generate  # noqa: E402
from core.magi.schedule import MagiRunConfig  # noqa: E402
from core.upscale.loading import load_flashvsr  # noqa: E402
from core.upscale.noise import ChunkNoise, latent_slice  # noqa: E402
from core.upscale.sparse_mask import draft_block_mask, local_window_mask  # noqa: E402
from core.upscale.streamer import FlashVSRStreamer, plan_frames  # noqa: E402
from tests.conftest_magi import StandInVAE  # noqa: E402

pytest_plugins = ["tests.conftest_magi", "tests.conftest_upscale"]

GOLDEN = Path(__file__).parent / "data" / "reference"


def golden(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


# ---- TeaCache ---------------------------------------------------------------------------------------------


def replay(case: dict, *, absolute: bool = False) -> list[bool]:
    """Our decisions for a case: step 0 and the last step computed, as the Wan hooks (warm-up 1) do."""
    decision = ReuseDecision(case["threshold"], tuple(case["coefficients"]), absolute=absolute)
    steps = len(case["changes"]) + 1
    reused = []
    for step in range(steps):
        value = float(np.prod([1.0 + c for c in case["changes"][:step]]))  # as the golden script builds it
        embedding = torch.full((8,), value, dtype=torch.float32)
        reused.append(decision.should_reuse(embedding, force_compute=step == 0 or step == steps - 1))
    return reused


@pytest.mark.parametrize("case", golden("teacache_decisions")["cases"], ids=lambda case: case["name"])
def test_teacache_decisions_match_teacache4wan(case):
    assert replay(case) == case["reused"]


def test_teacache_issue_example_reuses_48_of_50_steps():
    """1.3B fit, threshold 0.08, relative changes 0.18-0.30: the fit is negative there, the sum shrinks."""
    case = golden("teacache_decisions")["cases"][0]
    assert case["name"] == "issue" and len(case["reused"]) == 50
    assert sum(replay(case)) == 48
    assert sum(not reused for reused in replay(case, absolute=True)) == 45  # the optional absolute rule


# ---- MAGI-1 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", golden("magi_captions")["cases"], ids=lambda case: case[0][:30])
def test_caption_cleaning_matches_the_official_text_preprocessing(case):
    caption, expected = case
    assert clean_caption(caption) == expected


class RecordingVAE(StandInVAE):
    """The stand-in VAE that also encodes a single frame (an image) and records what it decodes."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded_latents: list[torch.Tensor] = []

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        if video.shape[2] == 1:
            video = video.expand(-1, -1, self.temporal_factor, -1, -1)
        return super().encode(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.decoded_latents.append(latents.clone())
        return super().decode(latents)


@pytest.mark.parametrize(
    "case", golden("magi_decode_ranges")["cases"], ids=lambda case: f"prefix{case['prefix_latents']}"
)
def test_magi_decodes_the_latents_after_the_prefix_like_the_official(distill_dit, caption, case):
    vae = RecordingVAE()
    width, prefix_latents = case["chunk_width"], case["prefix_latents"]
    prefix = None
    if prefix_latents is not None:
        frames = 1 if prefix_latents == 1 else prefix_latents * vae.temporal_factor
        prefix = torch.rand(frames, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    full = 0 if prefix_latents is None else prefix_latents // width
    seen = []
    generate(
        distill_dit,
        vae,
        *caption,
        num_chunks=len(case["ranges"]) - full,
        height=32,
        width=32,
        steps=8,
        guidance=1.0,
        seed=0,
        prefix_video=prefix,
        run=MagiRunConfig(chunk_width=width),
        on_chunk=lambda index, frames: seen.append(frames.shape[0]),
    )
    expected = [stop - start for start, stop in filter(None, case["ranges"])]
    assert [latents.shape[2] for latents in vae.decoded_latents] == expected
    assert seen == [vae.temporal_factor * t for t in expected]
    if prefix_latents == 1:  # an image prefix: its latent frame starts the decoded first chunk, kept clean
        image = vae.encode(prefix.permute(3, 0, 1, 2)[None] * 2 - 1)
        torch.testing.assert_close(vae.decoded_latents[0][:, :, :1], image)


# ---- FlashVSR ---------------------------------------------------------------------------------------------


def record_noise(model, streamer: FlashVSRStreamer, frames: list[np.ndarray], seed: int) -> list:
    """The starting noise ``streamer`` hands the DiT for each chunk."""
    seen = []
    forward = model.dit.forward_chunk

    def recording(noise, *args, **kwargs):
        seen.append(noise.detach().float().cpu())
        return forward(noise, *args, **kwargs)

    model.dit.forward_chunk = recording
    try:
        for _ in streamer.run(frames, len(frames), seed=seed):
            pass
    finally:
        del model.dit.forward_chunk
    return seen


def test_official_noise_slices_and_values(tiny_flashvsr):
    """A CPU generator stands in for the CUDA one: the chunks are the official slices of one bf16 draw."""
    data = golden("flashvsr_noise")
    for padded, slices in data["slices_by_padded"].items():
        assert [[s.start, s.stop] for s in map(latent_slice, range(len(slices)))] == slices
        assert plan_frames(int(padded) - 4).chunks == len(slices)
    frames = [np.full((data["height"], data["width"], 3), 128, np.uint8)] * (data["padded_frames"] - 4)
    assert plan_frames(len(frames)).padded == data["padded_frames"]
    streamer = FlashVSRStreamer(tiny_flashvsr, noise_draw="official")
    seen = record_noise(tiny_flashvsr, streamer, frames, data["seed"])
    assert [[0, n.shape[2]] for n in seen] == [[0, b - a] for a, b in data["slices"]]
    assert [float(n.double().sum()) for n in seen] == pytest.approx(data["chunk_sums"], rel=1e-9, abs=1e-9)
    shape = (1, 16, data["height"] // 8, data["width"] // 8)
    cpu = torch.device("cpu")
    source = ChunkNoise("official", data["seed"], shape, data["padded_frames"], cpu, torch.float32)
    assert all(torch.equal(n, source.chunk(i, n.shape[2])) for i, n in enumerate(seen))


def test_cpu_default_is_the_deterministic_per_chunk_draw(tiny_flashvsr):
    streamer = FlashVSRStreamer(tiny_flashvsr)
    assert streamer.noise_draw == "per-chunk"
    frames = [np.full((128, 128, 3), 90, np.uint8)] * 29
    seen = record_noise(tiny_flashvsr, streamer, frames, seed=5)
    generator = torch.Generator("cpu").manual_seed(5)
    assert all(torch.equal(n, torch.randn(n.shape, generator=generator)) for n in seen)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_default_is_the_official_draw(tiny_flashvsr_dir):
    model = load_flashvsr(tiny_flashvsr_dir, "tiny-long", torch.device("cuda"), torch.bfloat16)
    streamer = FlashVSRStreamer(model)
    assert streamer.noise_draw == "official"
    frames = [np.full((128, 128, 3), 90, np.uint8)] * 37
    seen = record_noise(model, streamer, frames, seed=7)
    generator = torch.Generator("cuda").manual_seed(7)
    whole = torch.randn((1, 16, 10, 16, 16), generator=generator, device="cuda", dtype=torch.bfloat16)
    assert len(seen) == 3
    assert all(torch.equal(n, whole[:, :, latent_slice(i)].float().cpu()) for i, n in enumerate(seen))


def test_draft_mask_keeps_the_official_bf16_precision():
    """Inputs where bf16 scores tie at the top-k threshold: ours follows the official bf16 draft."""
    data = np.load(GOLDEN / "flashvsr_draft_mask.npz")
    rows, cols, heads, slabs, topk, local_range = (int(v) for v in data["params"])
    q = torch.from_numpy(data["q_bf16_bits"]).view(torch.bfloat16)
    k = torch.from_numpy(data["k_bf16_bits"]).view(torch.bfloat16)
    local = local_window_mask(rows, cols, local_range)
    mask = draft_block_mask(q, k, heads, slabs, topk, local)[0]
    assert torch.equal(mask, torch.from_numpy(data["mask"]))
    upcast = draft_block_mask(q.float(), k.float(), heads, slabs, topk, local)[0]
    assert torch.equal(upcast, torch.from_numpy(data["fp32_mask"]))
    assert not torch.equal(mask, upcast)
