"""Step caches for text-to-video: TeaCache for Wan plus diffusers' FirstBlockCache, MagCache and TaylorSeer,
chosen per request (see docs/caches.md)."""

from core.caches.config import METHODS, PRESETS, CacheConfig, parse_cache_config
from core.caches.criterion import ReuseDecision
from core.caches.session import CacheSession, apply_cache

__all__ = [
    "METHODS",
    "PRESETS",
    "CacheConfig",
    "CacheSession",
    "ReuseDecision",
    "apply_cache",
    "parse_cache_config",
]
