"""A tiny random-weight FlashVSR v1.1 in the official file layout, for tests and ``--dev``.

Same file names and key names as the published weights, with small widths recorded in
``flashvsr_config.json`` (which the loader reads; the real folder has none and gets the v1.1 sizes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from core.upscale.config import (
    CONFIG_FILE,
    DIT_FILE,
    LQ_PROJ_FILE,
    PROMPT_FILE,
    TC_DECODER_FILE,
    VAE_FILE,
    DiTConfig,
    FlashVSRConfig,
    LQProjectionConfig,
    TCDecoderConfig,
)
from core.upscale.dit import StreamingWanDiT
from core.upscale.full_vae import build_vae, original_key_names
from core.upscale.lq_projection import CausalLQProjection
from core.upscale.tc_decoder import TinyConditionalDecoder

TINY_CONFIG = FlashVSRConfig(
    dit=DiTConfig(dim=48, ffn_dim=64, num_heads=2, num_layers=2, text_dim=32, freq_dim=32),
    lq_projection=LQProjectionConfig(out_dim=48, hidden_dim1=16, hidden_dim2=24),
    tc_decoder=TCDecoderConfig(channels=(8, 4, 4, 4)),
    vae={"base_dim": 8},
)
PROMPT_TOKENS = 16


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().contiguous() for key, value in state.items()}


def build_tiny_flashvsr(folder: Path, seed: int = 0) -> Path:
    """Write the five official FlashVSR v1.1 files (tiny, random) and the tiny config into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = TINY_CONFIG
    (folder / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    save_file(_contiguous(StreamingWanDiT(config.dit).state_dict()), str(folder / DIT_FILE))
    torch.save(_contiguous(CausalLQProjection(config.lq_projection).state_dict()), folder / LQ_PROJ_FILE)
    decoder = TinyConditionalDecoder(config.tc_decoder)
    torch.save(
        {f"decoder.{k}": v for k, v in _contiguous(decoder.decoder.state_dict()).items()},
        folder / TC_DECODER_FILE,
    )
    vae = build_vae(config.vae)
    names = original_key_names(vae)
    torch.save({names[k]: v for k, v in _contiguous(vae.state_dict()).items()}, folder / VAE_FILE)
    torch.save(torch.randn(1, PROMPT_TOKENS, config.dit.text_dim), folder / PROMPT_FILE)
    return folder
