"""Speed options for the DiT: attention backend per GPU, regional compile, fp8 Turbo."""

from core.speed.apply import apply_speed
from core.speed.attention import AttentionChoice, pick_attention_backend
from core.speed.compile import COMPILE_STAGE
from core.speed.config import ATTENTION_CHOICES, SpeedConfig, parse_speed_config

__all__ = [
    "ATTENTION_CHOICES",
    "COMPILE_STAGE",
    "AttentionChoice",
    "SpeedConfig",
    "apply_speed",
    "parse_speed_config",
    "pick_attention_backend",
]
