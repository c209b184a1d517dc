"""A tiny random-weight SkyReels-V2 Diffusion Forcing pipeline in the Hub layout, for tests and ``--dev``.

Same classes as ``Skywork/SkyReels-V2-DF-*-Diffusers`` (UMT5 encoder, Wan VAE, SkyReelsV2Transformer3DModel
with fps injection, UniPC flow scheduler) with tiny sizes, so the video-to-video pipeline runs on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.tiny.wan import TINY_TRANSFORMER, tiny_text_and_vae


def build_tiny_skyreels_df(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``SkyReelsV2DiffusionForcingVideoToVideoPipeline`` to ``folder``; returns ``folder``."""
    from diffusers import (
        SkyReelsV2DiffusionForcingVideoToVideoPipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )

    folder = Path(folder)
    torch.manual_seed(seed)
    shared = tiny_text_and_vae(folder)
    transformer = SkyReelsV2Transformer3DModel(
        **TINY_TRANSFORMER, inject_sample_info=True, num_frame_per_block=1
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=8.0
    )
    SkyReelsV2DiffusionForcingVideoToVideoPipeline(
        **shared, transformer=transformer, scheduler=scheduler
    ).save_pretrained(folder)
    return folder
