"""FlashVSR modules against the official v1.1 key names and shapes, and the tiny weights' layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from core.upscale.config import (
    DIT_FILE,
    LQ_PROJ_FILE,
    PROMPT_FILE,
    TC_DECODER_FILE,
    VAE_FILE,
    FlashVSRConfig,
    read_config,
)
from core.upscale.dit import StreamingWanDiT
from core.upscale.full_vae import build_vae, convert_original_vae, original_key_names
from core.upscale.lq_projection import CausalLQProjection
from core.upscale.streamer import FlashVSRStreamer
from core.upscale.tc_decoder import TinyConditionalDecoder

pytest_plugins = ["tests.conftest_upscale"]

OFFICIAL = json.loads((Path(__file__).parent / "data" / "flashvsr_official_keys.json").read_text())


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in state.items()}


def pattern(keys: dict[str, list[int]]) -> set[tuple[str, int]]:
    """Key names with block numbers folded, and the rank of each tensor."""
    return {(re.sub(r"^blocks\.\d+\.", "blocks.N.", key), len(shape)) for key, shape in keys.items()}


def real_modules() -> dict[str, torch.nn.Module]:
    config = FlashVSRConfig()
    with torch.device("meta"):
        return {
            DIT_FILE: StreamingWanDiT(config.dit),
            LQ_PROJ_FILE: CausalLQProjection(config.lq_projection),
            TC_DECODER_FILE: TinyConditionalDecoder(config.tc_decoder),
        }


def test_real_config_matches_official_names_and_shapes() -> None:
    for name, module in real_modules().items():
        assert shapes(module.state_dict()) == OFFICIAL[name], name


def test_real_vae_loads_official_layout_through_the_key_remap() -> None:
    official = {key: torch.empty(shape, device="meta") for key, shape in OFFICIAL[VAE_FILE].items()}
    with torch.device("meta"):
        vae = build_vae({})
    converted = shapes(convert_original_vae(official))
    expected = {key: list(value.shape) for key, value in vae.state_dict().items()}
    assert converted == expected
    assert set(original_key_names(vae).values()) == set(OFFICIAL[VAE_FILE])


def test_tiny_files_have_the_official_layout(tiny_flashvsr_dir: Path) -> None:
    files = {
        DIT_FILE: shapes(load_file(str(tiny_flashvsr_dir / DIT_FILE))),
        LQ_PROJ_FILE: shapes(torch.load(tiny_flashvsr_dir / LQ_PROJ_FILE, weights_only=True)),
        TC_DECODER_FILE: shapes(torch.load(tiny_flashvsr_dir / TC_DECODER_FILE, weights_only=True)),
        VAE_FILE: shapes(torch.load(tiny_flashvsr_dir / VAE_FILE, weights_only=True)),
    }
    for name, tiny in files.items():
        assert pattern(tiny) == pattern(OFFICIAL[name]), name
    assert set(files[LQ_PROJ_FILE]) == set(OFFICIAL[LQ_PROJ_FILE])
    assert set(files[TC_DECODER_FILE]) == set(OFFICIAL[TC_DECODER_FILE])
    assert set(files[VAE_FILE]) == set(OFFICIAL[VAE_FILE])
    prompt = torch.load(tiny_flashvsr_dir / PROMPT_FILE, weights_only=True)
    assert prompt.shape[-1] == read_config(tiny_flashvsr_dir).dit.text_dim


def test_tiny_weights_load_into_our_modules(tiny_flashvsr, tiny_flashvsr_dir: Path) -> None:
    stored = load_file(str(tiny_flashvsr_dir / DIT_FILE))
    loaded = tiny_flashvsr.dit.state_dict()
    assert set(stored) == set(loaded)
    assert all(torch.equal(stored[key], loaded[key]) for key in stored)
    assert tiny_flashvsr.tc_decoder is not None and tiny_flashvsr.vae_decoder is None
    assert tiny_flashvsr.dit.blocks[0].cross_attn.cached_k is not None


def test_output_matches_the_official_pipeline(tiny_flashvsr) -> None:
    """Golden frames (every 8th pixel) from the official v1.1 Tiny-Long code — its DiT, causal LQ
    projection, TCDecoder and AdaIN run on these tiny weights, the same noise and the same input."""
    golden = np.load(Path(__file__).parent / "data" / "flashvsr_official_golden.npz")
    rng = np.random.default_rng(0)
    shape = (int(golden["height"]), int(golden["width"]), 3)
    frames = [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(int(golden["count"]))]
    ours = np.concatenate(list(FlashVSRStreamer(tiny_flashvsr).run(frames, len(frames), seed=0)))
    difference = np.abs(ours[:, ::8, ::8].astype(int) - golden["frames"].astype(int))
    assert ours.shape[0] == golden["frames"].shape[0]
    assert difference.max() <= 1
