"""A tiny random-weight ``WanPipeline`` in the Hub layout, and the text encoder, tokenizer and VAE that the
other tiny Wan-family pipelines share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.validation import ConfigError
from weights.card_facts import Architecture

WORDS = (
    "a an the of in on at with and to from by is are cat dog bird fish horse person man woman child "
    "car boat train plane city street forest beach sea ocean mountain river sky sun moon night day "
    "red green blue yellow black white big small running walking flying swimming jumping sitting "
    "video scene camera shot slow motion close up wide view beautiful cinematic light dark blurry"
).split()
TEXT_DIM = 32
TINY_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=16,
    out_channels=16,
    text_dim=TEXT_DIM,
    freq_dim=32,
    ffn_dim=64,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
"""The tiny Wan DiT config; the SkyReels-V2 DF one adds its fps injection on top."""
TINY_VAE_STRIDE = (4, 8, 8)
"""Frames, height, width per latent cell of the tiny Wan VAE (:func:`tiny_text_and_vae`)."""


def build_tokenizer(folder: Path) -> None:
    """A word-level tokenizer with T5's special tokens, saved so ``AutoTokenizer`` loads it offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)


def umt5_text_encoder(
    d_model: int = 32,
    *,
    d_kv: int = 8,
    d_ff: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = len(WORDS) + 8,
):
    """A random-weight ``UMT5EncoderModel`` with T5's special-token ids (pad 0, eos 1)."""
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab_size,
            d_model=d_model,
            d_kv=d_kv,
            d_ff=d_ff,
            num_layers=num_layers,
            num_heads=num_heads,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def load_tokenizer(folder: Path):
    """Build the word-level tokenizer into ``folder`` and load it back with ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    build_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


def tiny_text_and_vae(folder: Path) -> dict:
    """The tiny text encoder (``TEXT_DIM`` wide), tokenizer (saved under ``folder/tokenizer``) and Wan VAE
    shared by the tiny Wan-family pipelines, as pipeline keyword arguments.

    Random weights are drawn text encoder first, then VAE, from the current torch seed."""
    from diffusers import AutoencoderKLWan

    text_encoder = umt5_text_encoder(TEXT_DIM)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    return {"tokenizer": load_tokenizer(Path(folder) / "tokenizer"), "text_encoder": text_encoder, "vae": vae}


def tiny_wan_transformer(arch: Architecture | None) -> dict[str, Any]:
    """The tiny Wan DiT config, sized by a card's ``arch`` facts when given (heads, head dim, layers,
    feed-forward, patch); the tiny VAE fixes the VAE stride."""
    if arch is None:
        return TINY_TRANSFORMER
    if arch.vae_stride != TINY_VAE_STRIDE:
        raise ConfigError(f"the tiny Wan VAE has stride {TINY_VAE_STRIDE}, not {arch.vae_stride}")
    sized = dict(num_attention_heads=arch.heads, attention_head_dim=arch.head_dim, num_layers=arch.layers)
    sized |= {"ffn_dim": arch.ffn_dim, "patch_size": arch.patch, "rope_max_seq_len": arch.rope_max_seq_len}
    return {**TINY_TRANSFORMER, **sized}


def build_tiny_wan(folder: Path, seed: int = 0, arch: Architecture | None = None) -> Path:
    """Save a tiny ``WanPipeline`` (text encoder, tokenizer, VAE, transformer, scheduler) to ``folder``,
    its DiT sized by ``arch`` (a card's facts) or :data:`TINY_TRANSFORMER`."""
    from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    shared = tiny_text_and_vae(folder)
    transformer = WanTransformer3DModel(**tiny_wan_transformer(arch))
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    WanPipeline(**shared, transformer=transformer, scheduler=scheduler).save_pretrained(folder)
    return folder
