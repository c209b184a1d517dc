"""MAGI-1 text conditioning: the T5 v1.1 XXL encoder plus the learned special tokens the official prompt
processing injects.

What the official pipeline does (``inference/pipeline/prompt_process.py`` and ``video_generate.py``):

* the prompt is cleaned twice (DeepFloyd-IF recipe), tokenized to ``caption_max_length`` = 800 tokens
  (padded, truncated, EOS added) and encoded by ``t5-v1_1-xxl`` (fp32; on the CPU for 4.5B). The mask is
  the tokenizer's attention mask.
* learned "special tokens" (T5-space vectors from ``example/assets/special_tokens.npz`` of the MAGI-1
  GitHub repo, cast to fp16) are prepended to the caption, each one shifting it right by one position and
  truncating it back to 800, its mask position set to 1. The published run scripts set ``PAD_HQ=1`` and
  ``PAD_DURATION=1``, so every generated chunk's caption is ``[DURATION_n, HQ, caption[:798]]``, where
  ``DURATION_n`` says how many chunks remain after it (n = min(remaining, 7) + 1).
* the classifier-free-guidance "null caption" is not a T5 encoding: it is the DiT's learned
  ``y_embedder.null_caption_embedding`` [800, 4096], repeated per chunk, with its first 50 mask positions
  on; ``NEG_PROMPT=1`` would also prepend CAPTION, LOGO, TRANS and BORDERNESS tokens (off by default).
  Chunks of a clean prefix (video continuation) use the null caption with an all-zero mask.

:meth:`MagiTextEncoder.encode_prompt` does the first two steps except the per-chunk duration token,
:func:`chunk_captions` adds that, :func:`null_captions` builds the unconditional side from the DiT weight.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.magi.caption_clean import clean_caption
from core.validation import ConfigError

T5_SUBFOLDER = "ckpt/t5/t5-v1_1-xxl"
CAPTION_MAX_LENGTH = 800
NULL_CAPTION_TOKENS = 50
SPECIAL_TOKENS_FILE = "special_tokens.npz"
SPECIAL_TOKENS_URL = "https://github.com/SandAI-org/MAGI-1/raw/main/example/assets/special_tokens.npz"
STYLE_TOKENS = ("HQ_TOKEN",)
"""The tokens the published run scripts prepend to every caption (``PAD_HQ=1``)."""
NEGATIVE_TOKENS = ("CAPTION_TOKEN", "LOGO_TOKEN", "TRANS_TOKEN", "BORDERNESS_TOKEN")
DURATION_TOKENS = 8
OTHER_TOKEN_ROWS = {
    "TRANS_TOKEN": 0,
    "HQ_TOKEN": 1,
    "STATIC_FIRST_FRAMES_TOKEN": 2,
    "DYNAMIC_FIRST_FRAMES_TOKEN": 3,
    "BORDERNESS_TOKEN": 4,
    **{f"DURATION_TOKEN_{n}": 6 + n for n in range(1, DURATION_TOKENS + 1)},
    "THREE_D_MODEL_TOKEN": 15,
    "TWO_D_ANIME_TOKEN": 16,
}
"""Rows of ``other_tokens`` in ``special_tokens.npz`` (the official code's slices)."""


def load_special_tokens(path: Path) -> dict[str, torch.Tensor]:
    """Every named special token of an official ``special_tokens.npz`` as a [D] fp16 tensor."""
    if not Path(path).is_file():
        raise ConfigError(
            f"MAGI special tokens missing: {path}. It is example/assets/{SPECIAL_TOKENS_FILE} of the "
            f"MAGI-1 GitHub repo ({SPECIAL_TOKENS_URL})"
        )
    with np.load(path) as data:
        other = data["other_tokens"]
        tokens = {"CAPTION_TOKEN": data["caption_token"][0], "LOGO_TOKEN": data["logo_token"][0]}
        tokens |= {name: other[row] for name, row in OTHER_TOKEN_ROWS.items()}
    return {name: torch.from_numpy(value.astype(np.float16)) for name, value in tokens.items()}


def fetch_special_tokens(root: Path, url: str = SPECIAL_TOKENS_URL) -> Path:
    """``root/special_tokens.npz``, downloaded from the MAGI-1 GitHub repo when missing (atomic)."""
    target = Path(root) / SPECIAL_TOKENS_FILE
    if not target.is_file():
        part = target.with_name(f".{target.name}.part")
        urllib.request.urlretrieve(url, part)
        os.replace(part, target)
    return target


def prepend_tokens(
    caption: torch.Tensor, mask: torch.Tensor | None, tokens: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Official ``_pad_special_token`` for each token in order: put it first, keep the length (the last
    positions fall off), mark it in ``mask``. ``caption`` [..., L, D], ``mask`` [..., L] or None."""
    length = caption.shape[-2]
    for token in tokens:
        token = token.to(device=caption.device, dtype=caption.dtype).expand(*caption.shape[:-2], 1, -1)
        caption = torch.cat([token, caption], dim=-2)[..., :length, :]
        if mask is not None:
            ones = torch.ones(*mask.shape[:-1], 1, dtype=mask.dtype, device=mask.device)
            mask = torch.cat([ones, mask], dim=-1)[..., :length]
    return caption, mask


def duration_token_name(chunk: int, num_chunks: int) -> str:
    """The duration token of generated chunk ``chunk`` (0-based) of ``num_chunks``."""
    return f"DURATION_TOKEN_{min(num_chunks - chunk - 1, DURATION_TOKENS - 1) + 1}"


def chunk_captions(
    caption: torch.Tensor,
    mask: torch.Tensor,
    num_chunks: int,
    special_tokens: dict[str, torch.Tensor],
    *,
    duration: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions [B, L, D] and masks [B, L] -> per generated chunk [B, n, L, D] and [B, n, L], each chunk
    with its duration token prepended (official ``PAD_DURATION=1``) unless ``duration`` is False."""
    if num_chunks < 1:
        raise ValueError("num_chunks must be at least 1")
    captions = caption.unsqueeze(1).repeat(1, num_chunks, 1, 1)
    masks = mask.unsqueeze(1).repeat(1, num_chunks, 1)
    if not duration:
        return captions, masks
    out = [
        prepend_tokens(captions[:, i], masks[:, i], [special_tokens[duration_token_name(i, num_chunks)]])
        for i in range(num_chunks)
    ]
    return torch.stack([c for c, _ in out], dim=1), torch.stack([m for _, m in out], dim=1)


def null_captions(
    null_embedding: torch.Tensor,
    num_chunks: int,
    special_tokens: dict[str, torch.Tensor] | None = None,
    *,
    negative_tokens: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unconditional captions from the DiT's ``null_caption_embedding`` [L, D]: [1, n, L, D] and a
    [1, n, L] mask with the first 50 positions on; ``negative_tokens`` adds the ``NEG_PROMPT`` tokens."""
    embeds = null_embedding.unsqueeze(0).unsqueeze(0).repeat(1, num_chunks, 1, 1)
    if negative_tokens:
        if special_tokens is None:
            raise ValueError("negative_tokens needs the special tokens")
        embeds, _ = prepend_tokens(embeds, None, [special_tokens[n] for n in NEGATIVE_TOKENS])
    mask = torch.zeros(1, num_chunks, embeds.shape[-2], dtype=torch.long, device=embeds.device)
    mask[..., :NULL_CAPTION_TOKENS] = 1
    return embeds, mask


def t5_folder(folder: Path) -> Path:
    """``folder`` when it holds the T5 config, else its ``t5-v1_1-xxl`` or ``ckpt/t5/t5-v1_1-xxl`` one."""
    for candidate in (folder, folder / Path(T5_SUBFOLDER).name, folder / T5_SUBFOLDER):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(f"no MAGI T5 encoder in {folder}: expected config.json there or under {T5_SUBFOLDER}/")


class MagiTextEncoder:
    """T5 encoder + tokenizer + special tokens, producing MAGI-1 caption embeddings."""

    def __init__(
        self,
        tokenizer,
        model: torch.nn.Module,
        special_tokens: dict[str, torch.Tensor],
        max_length: int = CAPTION_MAX_LENGTH,
    ) -> None:
        hidden = model.config.d_model
        wrong = sorted(name for name, value in special_tokens.items() if value.shape != (hidden,))
        if wrong:
            raise ConfigError(f"MAGI special tokens {', '.join(wrong[:3])} are not {hidden}-wide like the T5")
        self.tokenizer = tokenizer
        self.model = model
        self.special_tokens = special_tokens
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        folder: Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        special_tokens: Path | None = None,
        max_length: int = CAPTION_MAX_LENGTH,
    ) -> MagiTextEncoder:
        """Load from a snapshot root (``ckpt/t5/t5-v1_1-xxl`` under it, ``special_tokens.npz`` at its top) or
        from the T5 folder itself with ``special_tokens`` given. The official 4.5B runs T5 in fp32."""
        from transformers import AutoTokenizer, T5EncoderModel

        folder = Path(folder)
        t5 = t5_folder(folder)
        tokens = load_special_tokens(special_tokens or folder / SPECIAL_TOKENS_FILE)
        tokenizer = AutoTokenizer.from_pretrained(t5)
        model = T5EncoderModel.from_pretrained(t5, dtype=dtype).to(device).eval().requires_grad_(False)
        return cls(tokenizer, model, tokens, max_length)

    @property
    def hidden_size(self) -> int:
        return self.model.config.d_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_prompt(
        self, prompts: list[str], *, style_tokens: Sequence[str] = STYLE_TOKENS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> caption [B, L, D] (fp32, L = ``max_length``) and mask [B, L] (long, 1 = token), with
        ``style_tokens`` prepended in order (the last one ends up first). Padding positions are masked
        out and, like the official code, carry T5's output for pad tokens (the DiT ignores them)."""
        unknown = [name for name in style_tokens if name not in self.special_tokens]
        if unknown:
            known = sorted(self.special_tokens)
            raise ConfigError(f"unknown MAGI special token(s) {unknown}; known: {known}")
        batch = self.tokenizer(
            [clean_caption(p) for p in prompts],
            max_length=self.max_length,
            padding="max_length",
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        caption = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return prepend_tokens(caption, mask.long(), [self.special_tokens[n] for n in style_tokens])
