"""Install the asked step cache on a pipeline for one job, and take it off again afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
from diffusers.hooks.mag_cache import nearest_interp

from core.caches.config import CacheConfig, Calibration, calibration_for
from core.caches.stats import StepCounter, install_counter, remove_counter, summarize
from core.caches.teacache import apply_teacache, remove_teacache
from weights.registry import ModelCard

TRANSFORMER_NAMES = ("transformer", "transformer_2")


class CacheSession:
    """Context manager: on enter, hooks ``config``'s cache (and step counters) onto each transformer of
    ``pipe`` with fresh state; on exit, removes them and leaves the modules as they were.

    ``calibration`` replaces the card's calibration data (for experiments such as the benchmark).
    """

    def __init__(
        self, pipe: Any, card: ModelCard, config: CacheConfig, calibration: Calibration | None = None
    ) -> None:
        self.pipe = pipe
        self.card = card
        self.config = config
        self.calibration = calibration or (calibration_for(card) if config.enabled else Calibration())
        self.transformers = {
            name: module for name in TRANSFORMER_NAMES if (module := getattr(pipe, name, None)) is not None
        }
        self.counters: dict[str, StepCounter] = {}
        self._snapshots: dict[str, _ModuleSnapshot] = {}
        self._active = False

    def __enter__(self) -> CacheSession:
        if self._active:
            raise RuntimeError("this cache session is already active")
        for name, transformer in self.transformers.items():
            if getattr(transformer, "is_cache_enabled", False):
                raise RuntimeError(f"pipe.{name} already has a diffusers cache enabled; disable it first")
            self._snapshots[name] = _ModuleSnapshot(transformer)
        self.counters = {}
        try:
            for name, transformer in self.transformers.items():
                self.counters[name] = install_counter(transformer, count_blocks=self.config.enabled)
                self._install(transformer, self.counters[name])
        except Exception:
            self._remove_all()
            raise
        self._active = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._remove_all()
        self._active = False

    def stats(self) -> dict[str, Any]:
        """What the cache did so far: ``method``, ``threshold``, ``steps_computed``, ``steps_reused``,
        ``reuse_fraction``, ``estimated_seconds_saved`` and per-branch counts under ``branches``.

        A "step" is one transformer forward (so a CFG step counts twice); "reused" means the blocks did
        not run (for taylorseer: the output was extrapolated from the last computed steps).
        """
        return {"method": self.config.method, "threshold": self.config.threshold, **summarize(self.counters)}

    def _install(self, transformer: torch.nn.Module, counter: StepCounter) -> None:
        method, threshold = self.config.method, self.config.threshold
        if method == "teacache":
            apply_teacache(transformer, self.calibration.teacache, threshold)
        elif method == "first_block":
            transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        elif method == "mag":
            ratios = list(self.calibration.mag_ratios)
            mag = MagCacheConfig(threshold=threshold, mag_ratios=ratios, num_inference_steps=len(ratios))
            transformer.enable_cache(mag)
            counter.on_steps = _mag_refitter(mag, ratios)
        elif method == "taylorseer":
            transformer.enable_cache(TaylorSeerCacheConfig(cache_interval=int(threshold), use_lite_mode=True))

    def _remove_all(self) -> None:
        for name, transformer in self.transformers.items():
            if self.config.method == "teacache":
                remove_teacache(transformer)
            elif getattr(transformer, "is_cache_enabled", False):
                transformer.disable_cache()
            remove_counter(transformer)
            if name in self._snapshots:
                self._snapshots.pop(name).restore(transformer)


def apply_cache(pipe: Any, card: ModelCard, config: CacheConfig) -> CacheSession:
    """A :class:`CacheSession` for ``pipe``; use as ``with apply_cache(pipe, card, config) as session:``."""
    return CacheSession(pipe, card, config)


def _mag_refitter(mag: MagCacheConfig, ratios: list[float]) -> Callable[[int], None]:
    """Re-fit MagCache's per-step ratios to the run's step count (read from the pipeline's cache context)."""

    def refit(steps: int) -> None:
        if steps != mag.num_inference_steps:
            mag.num_inference_steps = steps
            mag.mag_ratios = nearest_interp(torch.tensor(ratios), steps)

    return refit


class _ModuleSnapshot:
    """Which submodules had a hook registry or an instance ``forward`` before the session, to undo ours."""

    def __init__(self, root: torch.nn.Module) -> None:
        self.had_registry = {id(m) for m in root.modules() if hasattr(m, "_diffusers_hook")}
        self.had_forward = {id(m) for m in root.modules() if "forward" in vars(m)}

    def restore(self, root: torch.nn.Module) -> None:
        for module in root.modules():
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None and not registry.hooks and id(module) not in self.had_registry:
                del module._diffusers_hook
            if "forward" in vars(module) and id(module) not in self.had_forward and not _is_hooked(module):
                del module.forward
        if hasattr(root, "_diffusers_hook"):
            root._diffusers_hook.invalidate_child_registries_cache()


def _is_hooked(module: torch.nn.Module) -> bool:
    registry = getattr(module, "_diffusers_hook", None)
    return registry is not None and bool(registry.hooks)
