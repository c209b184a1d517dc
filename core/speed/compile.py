"""Regional ``torch.compile`` of the DiT's repeated blocks, with inductor's caches kept on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

COMPILE_STAGE = "compiling (first run only)"
CACHE_FOLDER = "torch-compile-cache"


def use_compile_cache(models_dir: Path) -> Path:
    """Keep inductor's FX graph and AOT autograd caches under ``models_dir`` so later runs skip most work.

    Values the user already set in the environment win.
    """
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # inductor writes its default folder into the environment the first time it asks for it (any compile
    # or some imports): that default is no user's choice, so it is replaced
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(models_dir) / CACHE_FOLDER)
    folder = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    functorch_config.enable_autograd_cache = os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def should_compile(setting: bool | str, device: torch.device) -> tuple[bool, str]:
    """Resolve the ``compile`` option: ``auto`` is on for CUDA GPUs and off on the CPU."""
    if setting == "auto":
        if device.type == "cuda":
            return True, "auto: CUDA GPU (first run compiles, later runs reuse the on-disk cache)"
        return False, f"auto: off on {device.type} (warm-up costs more than it saves)"
    return bool(setting), "asked for" if setting else "turned off"


def compile_blocks(model: Any, fullgraph: bool = True, **compile_kwargs: Any) -> int:
    """``torch.compile`` each repeated block of ``model``; returns how many were compiled."""
    model.compile_repeated_blocks(fullgraph=fullgraph, **compile_kwargs)
    names = set(model._repeated_blocks)
    return sum(type(module).__name__ in names for module in model.modules())


def announce_first_call(model: Any, report: Any) -> None:
    """Call ``report(COMPILE_STAGE)`` when ``model`` first runs (that call compiles), then forget the hook."""

    def on_first_call(module: Any, args: Any) -> None:
        handle.remove()
        report(COMPILE_STAGE)

    handle = model.register_forward_pre_hook(on_first_call)
