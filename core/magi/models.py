"""A MAGI-1 card's models for the app: DiT, VAE and T5 text encoder on the runner's device.

Where they are in the snapshot comes from the card (``extra``: ``dit_subfolder``, ``vae_subfolder``,
``t5_subfolder``). The Hub has no DiT config json, so the architecture is the published
:func:`~core.magi.config.preset` of the card's variant, unless a config json sits beside the weights (the
tiny test model). The DiT runs in the device's compute dtype, the VAE in the card's ``vae_dtype`` on a GPU
(float32 on the CPU), T5 in float32 as published, where the memory planner puts it
(:func:`core.memory.planner.text_encoder_device`).

The learned special tokens the published prompt processing adds live in the MAGI-1 GitHub repo, not the
weights repo: ``special_tokens.npz`` is read from the snapshot when it is there, else from
``<models dir>/magi-1-assets/``, fetched from the card's ``special_tokens_url`` when missing and online.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.hardware import compute_dtype
from core.magi.config import MagiDiTConfig, preset
from core.magi.dit import MagiDiT
from core.magi.loading import find_config, load_magi_dit
from core.magi.request import run_config, variant
from core.magi.schedule import MagiRunConfig
from core.magi.text import (
    SPECIAL_TOKENS_FILE,
    SPECIAL_TOKENS_URL,
    MagiTextEncoder,
    chunk_captions,
    fetch_special_tokens,
)
from core.magi.vae import MagiVAE
from core.memory.planner import text_encoder_device
from core.settings import Settings
from core.validation import ConfigError
from weights.registry import ModelCard
from weights.store import ModelMissingError, is_offline

ASSETS_DIR = "magi-1-assets"
DURATION_TOKEN = "DURATION_TOKEN"


@dataclass
class MagiModels:
    """Everything one MAGI-1 generation needs, loaded."""

    dit: MagiDiT
    vae: MagiVAE
    text: MagiTextEncoder
    run: MagiRunConfig
    style_tokens: tuple[str, ...]
    duration_tokens: bool

    def captions(self, prompt: str, chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per generated chunk caption [1, chunks, L, D] and mask, with the card's special tokens."""
        caption, mask = self.text.encode_prompt([prompt], style_tokens=self.style_tokens)
        tokens = self.text.special_tokens
        return chunk_captions(caption, mask, chunks, tokens, duration=self.duration_tokens)


def special_tokens_file(card: ModelCard, folder: Path, settings: Settings) -> Path:
    """``special_tokens.npz``: in the snapshot, else in the shared assets folder (fetched when missing)."""
    shared = settings.models_dir / ASSETS_DIR
    for candidate in (Path(folder) / SPECIAL_TOKENS_FILE, shared / SPECIAL_TOKENS_FILE):
        if candidate.is_file():
            return candidate
    url = card.extra.get("special_tokens_url", SPECIAL_TOKENS_URL)
    if is_offline(settings):
        raise ModelMissingError(
            f"MAGI-1 needs {SPECIAL_TOKENS_FILE} (from the MAGI-1 GitHub repo) and the app is offline: "
            f"download {url} and place it in {shared}"
        )
    shared.mkdir(parents=True, exist_ok=True)
    try:
        return fetch_special_tokens(shared, url)
    except (OSError, ValueError) as exc:  # urllib's URLError is an OSError
        raise ConfigError(
            f"could not fetch MAGI-1 {SPECIAL_TOKENS_FILE} from {url} ({exc}); download it and place it in "
            f"{shared}"
        ) from exc


def dit_config(card: ModelCard, folder: Path) -> MagiDiTConfig:
    """A config json beside the DiT weights when there is one, else the published preset of the variant."""
    try:
        return find_config((Path(folder) / card.extra["dit_subfolder"]).parent)
    except ConfigError:
        return preset(variant(card))


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"unknown dtype {name!r} in a MAGI-1 card")
    return dtype


def load_magi_models(card: ModelCard, folder: Path, device: torch.device, settings: Settings) -> MagiModels:
    """Load ``card``'s DiT, VAE and text encoder from the snapshot ``folder`` for ``device``."""
    folder, extra = Path(folder), card.extra
    tokens = special_tokens_file(card, folder, settings)
    dit = load_magi_dit(
        folder / extra["dit_subfolder"],
        config=dit_config(card, folder),
        device=device,
        dtype=compute_dtype(device),
    )
    vae_dtype = _dtype(extra.get("vae_dtype", "bfloat16")) if device.type == "cuda" else torch.float32
    vae = MagiVAE.from_pretrained(folder / extra.get("vae_subfolder", "ckpt/vae"), device, vae_dtype)
    text = MagiTextEncoder.from_pretrained(
        folder / extra.get("t5_subfolder", "ckpt/t5/t5-v1_1-xxl"),
        text_encoder_device(card, device),
        _dtype(extra.get("t5_dtype", "float32")),
        special_tokens=tokens,
        max_length=int(extra.get("caption_max_length", dit.config.caption_max_length)),
    )
    named = tuple(extra.get("special_tokens", ("HQ_TOKEN", DURATION_TOKEN)))
    return MagiModels(
        dit=dit,
        vae=vae,
        text=text,
        run=run_config(card),
        style_tokens=tuple(name for name in named if name != DURATION_TOKEN),
        duration_tokens=DURATION_TOKEN in named,
    )
