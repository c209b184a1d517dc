"""User LoRAs for the Wan-family pipelines: the request field, the loras folder, key formats, loading."""

from core.lora.apply import PreparedLora, apply_loras, lora_variant, prepare_loras
from core.lora.library import ResolvedLora, list_loras, resolve_lora
from core.lora.spec import EXPERTS, LoraSpec, parse_loras

__all__ = [
    "EXPERTS",
    "LoraSpec",
    "PreparedLora",
    "ResolvedLora",
    "apply_loras",
    "list_loras",
    "lora_variant",
    "parse_loras",
    "prepare_loras",
    "resolve_lora",
]
