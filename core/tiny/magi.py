"""Tiny random-weight MAGI-1 VAE, T5 and special tokens in the published ``sand-ai/MAGI-1`` layout.

Writes what the real snapshot has (same file names, formats and config keys), with tiny sizes:

* ``ckpt/vae/config.json`` (``ViTVAE``, ``ddconfig``) + ``diffusion_pytorch_model.safetensors``
* ``ckpt/t5/t5-v1_1-xxl/``: ``config.json``, ``pytorch_model-0000{1,2}-of-00002.bin`` +
  ``pytorch_model.bin.index.json``, and a SentencePiece tokenizer (``spiece.model``,
  ``tokenizer_config.json``, ``special_tokens_map.json``) trained offline on a small word list
* ``special_tokens.npz`` (the official GitHub asset's arrays, ``TINY_T5_DIM`` wide) at the top.

The DiT side (``ckpt/magi/<variant>/...``) comes from the DiT's own tiny builder (``core.tiny.magi_dit``);
its caption width must be ``TINY_T5_DIM``. :func:`build_tiny_magi` writes both.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from core.magi.text import SPECIAL_TOKENS_FILE, T5_SUBFOLDER
from core.magi.vae import CONFIG_NAME, HUB_SUBFOLDER, PUBLISHED_DDCONFIG, WEIGHTS_NAME, MagiVAE
from core.magi.vae_blocks import ViTConfig
from core.tiny.magi_dit import build_tiny_magi_dit
from core.tiny.wan import WORDS

TINY_T5_DIM = 32
TINY_VAE_DDCONFIG = PUBLISHED_DDCONFIG | dict(
    video_size=32, video_length=8, embed_dim=256, depth=1, num_heads=4
)
"""The published ddconfig with tiny sizes; the 4x8x8 patch (the compression) is kept."""
T5_SHARDS = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
SPECIAL_TOKENS = {"caption_token": 1, "logo_token": 1, "other_tokens": 100}
"""Array name -> rows, as in the official ``special_tokens.npz``."""


def build_tiny_magi_vae(folder: Path) -> None:
    """``folder/ckpt/vae`` with a random tiny VAE (draws from the current torch seed)."""
    target = Path(folder) / HUB_SUBFOLDER
    target.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    vae = MagiVAE(ViTConfig(**TINY_VAE_DDCONFIG))
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(target / WEIGHTS_NAME))
    config = {"_class_name": "ViTVAE", "_diffusers_version": "0.29.2", "ddconfig": TINY_VAE_DDCONFIG}
    (target / CONFIG_NAME).write_text(json.dumps(config | {"model_type": "vit"}, indent=2), encoding="utf-8")


def build_sentencepiece(target: Path) -> int:
    """A unigram SentencePiece model over ``WORDS`` with T5's ids (pad 0, eos 1, unk 2) and the T5 tokenizer
    files next to it; returns its vocabulary size."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 20 + list(WORDS)),
        model_writer=model,
        vocab_size=len(WORDS) + 40,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    (target / "spiece.model").write_bytes(model.getvalue())
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    tokenizer_config = special | {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "model_max_length": 512}
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    (target / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return processor.get_piece_size()


def build_tiny_t5(folder: Path) -> None:
    """``folder/ckpt/t5/t5-v1_1-xxl`` with a random tiny ``T5EncoderModel`` in two ``.bin`` shards."""
    from transformers import T5Config, T5EncoderModel

    target = Path(folder) / T5_SUBFOLDER
    target.mkdir(parents=True, exist_ok=True)
    vocab = build_sentencepiece(target)
    config = T5Config(
        vocab_size=-(-vocab // 8) * 8,
        d_model=TINY_T5_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    )
    state = T5EncoderModel(config).state_dict()
    names = sorted(state)
    half = len(names) // 2
    weight_map = {}
    for shard, keys in zip(T5_SHARDS, (names[:half], names[half:]), strict=True):
        torch.save({k: state[k].contiguous() for k in keys}, target / shard)
        weight_map |= dict.fromkeys(keys, shard)
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (target / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    config.save_pretrained(target)


def build_special_tokens(folder: Path, dim: int = TINY_T5_DIM, seed: int = 0) -> None:
    """``folder/special_tokens.npz`` with the official arrays (float64), random, ``dim`` wide."""
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(0.0, 0.1, (rows, dim)) for name, rows in SPECIAL_TOKENS.items()}
    np.savez(Path(folder) / SPECIAL_TOKENS_FILE, **arrays)


def build_tiny_magi_parts(folder: Path, seed: int = 0) -> None:
    """The tiny VAE, T5 and special tokens of a MAGI-1 snapshot, written under ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    build_tiny_magi_vae(folder)
    build_tiny_t5(folder)
    build_special_tokens(folder, seed=seed)


def build_tiny_magi(folder: Path) -> Path:
    """A tiny MAGI-1 snapshot in the published ``sand-ai/MAGI-1`` layout: VAE, T5 and special tokens, and the
    4.5B distill DiT (with a ``config.json``, since the tiny sizes differ from the published preset) under
    ``ckpt/magi/4.5B_distill/``."""
    folder = Path(folder)
    build_tiny_magi_parts(folder)
    build_tiny_magi_dit(folder / "ckpt" / "magi" / "4.5B_distill", "4.5B_distill")
    return folder
