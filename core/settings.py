"""App-wide settings, filled from the command line by app.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Where outputs and weights go, which GPUs to use, and what the app may do."""

    outputs_dir: Path = ROOT / "outputs"
    models_dir: Path = ROOT / "weights" / "cache"
    loras_dir: Path = ROOT / "loras"
    """User LoRA files (``.safetensors``); LoRAs named by Hub repo or URL are downloaded here."""
    offline: bool = False
    dev: bool = False
    gpus: tuple[int, ...] | None = None
    parallel: tuple[str, ...] = ()
    """The modes a job split over several GPUs may use (cfg, cp, ulysses, ring); empty: the default cfg, cp.
    With several GPUs every job runs on one GPU's worker unless its ``multi_gpu`` (auto, one, split) and the
    planner split it."""
    keep_queue: bool = False
    """Keep the unfinished jobs on disk (``core.queue_store``) and queue them again at the next start; the
    app does, tests and library use start empty."""
    allowed_dirs: tuple[Path, ...] = ()
    """Folders (besides the outputs folder) whose files batch rows may name (``--allow-dir``)."""
