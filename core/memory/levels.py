"""The low-memory levels, in one place. Each level keeps everything the level before it does.

0  everything on the GPU
1  + VAE tiling and slicing (decode in tiles: 4.7 -> 1.2 GiB at 480p)
2  + text encoder on the CPU (the prompt is encoded there; only the embeddings move to the GPU)
3  + CFG branches one after the other. Inherent for Wan: diffusers' WanPipeline already runs the
     conditional and unconditional passes as two batch-1 forwards, so this level changes nothing
     on top of level 2; it is kept so the numbering matches other deployments.
4  + DiT group offload: blocks live in pinned host memory and stream to the GPU one at a time
5  + DiT weights stored in float8 (on the host too), computed in bfloat16
6  + activation chunking: feed-forward and self-attention run over slices of the tokens
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from core.validation import ConfigError

log = logging.getLogger(__name__)

ALLOCATOR_SETTING = "expandable_segments:True"
AUTO = "auto"


@dataclass(frozen=True)
class MemoryLevel:
    """One low-memory level: its number, a short label for menus and what it adds to the level below."""

    number: int
    label: str
    adds: str


LEVELS: tuple[MemoryLevel, ...] = (
    MemoryLevel(0, "all on GPU", "Everything on the GPU: fastest, most memory."),
    MemoryLevel(1, "VAE tiling", "The VAE decodes the video in tiles."),
    MemoryLevel(2, "text encoder on CPU", "The text encoder stays in RAM and encodes the prompt on the CPU."),
    MemoryLevel(
        3,
        "CFG one at a time",
        "Guidance branches run one after the other (Wan's pipeline already does this: no extra change).",
    ),
    MemoryLevel(4, "DiT offload", "Transformer blocks stream from pinned RAM to the GPU one at a time."),
    MemoryLevel(5, "DiT offload + fp8", "Transformer weights stored in float8, computed in bfloat16."),
    MemoryLevel(6, "+ chunking", "Feed-forward and attention run over slices of the tokens."),
)
MAX_LEVEL = LEVELS[-1].number

VAE_TILING = 1
TEXT_ENCODER_ON_CPU = 2
SEQUENTIAL_CFG = 3
GROUP_OFFLOAD = 4
FP8_STORAGE = 5
CHUNKING = 6
DEFAULT_CHUNK_TOKENS = 8192
"""Tokens per slice at level 6 (``core.memory.chunking``); the estimate sizes the slice's working set."""


def check_level(value: Any, name: str = "memory level") -> int:
    """``value`` as a level number 0..6 (whole floats and digit strings accepted), or a ConfigError."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LEVEL:
        raise ConfigError(f"{name} must be 'auto' or a whole number from 0 to {MAX_LEVEL}; got {value!r}")
    return value


def parse_override(value: Any) -> int | None:
    """A user's level choice: ``None``/"auto" (let the planner pick) or a level number."""
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return None
    return check_level(value)


def expandable_segments_on() -> bool:
    """Whether the allocator setting in the environment asks for expandable segments (what
    :func:`configure_allocator` sets unless the user set something else)."""
    for key in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        if key in os.environ:
            return "expandable_segments:true" in os.environ[key].replace(" ", "").lower()
    return False


def configure_allocator() -> bool:
    """Ask the CUDA caching allocator for expandable segments (less fragmentation on small cards).

    Call at app startup, before anything touches CUDA; then it only sets ``PYTORCH_CUDA_ALLOC_CONF``
    (a value the user set wins). If CUDA is already initialised the setting is applied at run time.
    Returns True when expandable segments are (or will be) in effect.
    """
    if any(key in os.environ for key in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")):
        return expandable_segments_on()
    if not torch.cuda.is_initialized():
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = ALLOCATOR_SETTING
        return True
    try:
        torch.cuda.memory._set_allocator_settings(ALLOCATOR_SETTING)
    except (AttributeError, RuntimeError) as error:
        log.warning("could not turn on expandable segments after CUDA start: %s", error)
        return False
    os.environ["PYTORCH_CUDA_ALLOC_CONF"] = ALLOCATOR_SETTING  # what is in effect, for the planner's margin
    return True
