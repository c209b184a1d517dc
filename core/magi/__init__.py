"""MAGI-1 (Sand AI) chunk-wise autoregressive video model, own implementation loading the official weights:
DiT, loader, KV cache, schedule and generation loop (VAE and text encoder in `vae.py` and `text.py`)."""

from core.magi.config import VARIANTS, MagiDiTConfig, preset
from core.magi.dit import DiTOutput, MagiDiT, SlotReuse
from core.magi.generate import generate
from core.magi.hooks import MagiStepHooks, NoStepHooks, StepContext
from core.magi.kv_cache import ChunkKVCache, KeepAll, KVPolicy
from core.magi.loading import load_magi_dit
from core.magi.schedule import MagiRunConfig

__all__ = [
    "VARIANTS",
    "ChunkKVCache",
    "DiTOutput",
    "KVPolicy",
    "KeepAll",
    "MagiDiT",
    "MagiDiTConfig",
    "MagiRunConfig",
    "MagiStepHooks",
    "NoStepHooks",
    "SlotReuse",
    "StepContext",
    "generate",
    "load_magi_dit",
    "preset",
]
