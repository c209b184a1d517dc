"""Tiny random-weight image-to-video Wan models in the Hub layouts: Wan2.1 I2V (a CLIP vision encoder and
its image processor beside the DiT, whose 36 input channels take the latents, the frame mask and the
encoded condition video), Wan2.1 FLF2V (the same with a position embedding for the first and last
frames' image tokens) and a TI2V-style ``WanPipeline`` with ``expand_timesteps`` (Wan2.2 TI2V-5B's
layout: no image encoder, the first latent frame replaced by the image's)."""

from __future__ import annotations

from pathlib import Path

import torch

from core.tiny.wan import TINY_TRANSFORMER, tiny_text_and_vae

CLIP_SIZE = 32
CLIP_PATCH = 16
CLIP_TOKENS = (CLIP_SIZE // CLIP_PATCH) ** 2 + 1
"""Image tokens of the tiny CLIP: its patches and the class token (ViT-H/14 at 224 px: 257)."""
CLIP_DIM = 32


def tiny_clip():
    """A tiny ``CLIPVisionModel`` and the ``CLIPImageProcessor`` that feeds it (224 px in the real repos)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=CLIP_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=CLIP_SIZE,
        patch_size=CLIP_PATCH,
    )
    processor = CLIPImageProcessor(
        size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE}
    )
    return CLIPVisionModel(config), processor


def _scheduler(flow_shift: float):
    from diffusers import UniPCMultistepScheduler

    flow = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}
    return UniPCMultistepScheduler(**flow, flow_shift=flow_shift)


def _build_i2v(folder: Path, seed: int, *, last_frame: bool) -> Path:
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    shared = tiny_text_and_vae(folder)
    encoder, processor = tiny_clip()
    dim = TINY_TRANSFORMER["num_attention_heads"] * TINY_TRANSFORMER["attention_head_dim"]
    config = {**TINY_TRANSFORMER, "in_channels": 36, "image_dim": CLIP_DIM, "added_kv_proj_dim": dim}
    if last_frame:
        config["pos_embed_seq_len"] = 2 * CLIP_TOKENS
    pipe = WanImageToVideoPipeline(
        **shared,
        transformer=WanTransformer3DModel(**config),
        scheduler=_scheduler(16.0 if last_frame else 3.0),
        image_encoder=encoder,
        image_processor=processor,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_wan_i2v(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Wan2.1 I2V ``WanImageToVideoPipeline`` (with its CLIP encoder) to ``folder``."""
    return _build_i2v(folder, seed, last_frame=False)


def build_tiny_wan_flf2v(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Wan2.1 FLF2V ``WanImageToVideoPipeline`` (two images' tokens) to ``folder``."""
    return _build_i2v(folder, seed, last_frame=True)


def build_tiny_wan_ti2v(folder: Path, seed: int = 0) -> Path:
    """Save a tiny TI2V-style ``WanPipeline`` (``expand_timesteps``, no image encoder) to ``folder``."""
    from diffusers import WanPipeline, WanTransformer3DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    shared = tiny_text_and_vae(folder)
    transformer = WanTransformer3DModel(**TINY_TRANSFORMER)
    pipe = WanPipeline(**shared, transformer=transformer, scheduler=_scheduler(5.0), expand_timesteps=True)
    pipe.save_pretrained(folder)
    return folder
