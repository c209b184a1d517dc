"""A tiny random-weight SkyReels-V2 Diffusion Forcing pipeline in the Hub layout, for tests and ``--dev``.

Same classes as ``Skywork/SkyReels-V2-DF-*-Diffusers`` (UMT5 encoder, Wan VAE, SkyReelsV2Transformer3DModel
with fps injection, UniPC flow scheduler) with tiny sizes, so the video-to-video pipeline runs on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_skyreels_df(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``SkyReelsV2DiffusionForcingVideoToVideoPipeline`` to ``folder``; returns ``folder``."""
    from diffusers import (
        AutoencoderKLWan,
        SkyReelsV2DiffusionForcingVideoToVideoPipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    from weights.tiny import WORDS, build_tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    text_dim = 32
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(WORDS) + 8,
            d_model=text_dim,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        inject_sample_info=True,
        num_frame_per_block=1,
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=8.0
    )
    tokenizer_dir = folder / "tokenizer"
    build_tokenizer(tokenizer_dir)
    pipe = SkyReelsV2DiffusionForcingVideoToVideoPipeline(
        tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    return folder
