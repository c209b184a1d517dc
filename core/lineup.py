"""Which models each tab offers and opens on, decided from the cards and the hardware.

Three modes: ``full`` (a GPU that fits a real text-to-video model: the real models, those that fit this GPU
first), ``dev`` (``--dev``: the tiny test models first in every tab, then the real ones) and ``light`` (no
CUDA GPU, or none that fits any real text-to-video model: the studio opens on what runs here, a real model
that fits and whose weights are already here, else the tiny models, and keeps the real ones listed after
them with what they need). The page's notice says which mode it is and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.hardware import Hardware
from core.settings import Settings
from weights.registry import ModelCard, cards_for
from weights.store import model_status

FULL, DEV, LIGHT = "full", "dev", "light"
TAB_NAMES = {"t2v": "Text to video", "continue": "Continue video", "upscale": "Upscale"}
TAB_TASKS = tuple(TAB_NAMES)


def needs_text(card: ModelCard) -> str:
    """What a model needs and weighs, e.g. "a CUDA GPU with 8 GB or more · about 29 GB to download"."""
    if card.dev:
        return "runs anywhere (CPU: seconds) · built locally, nothing to download"
    where = "a GPU or the CPU" if card.runs_on_cpu else f"a CUDA GPU with {card.min_vram_gb:g} GB or more"
    size = card.download_label
    return f"{where} · {size.replace('~', 'about ')} to download" if size != "?" else where


@dataclass(frozen=True)
class Lineup:
    """The app's model lists: ``mode``, the largest GPU's memory (None: no CUDA GPU) and the real models
    whose weights are on this machine."""

    mode: str
    gpu_gb: float | None
    ready: frozenset[str] = frozenset()

    def fits(self, card: ModelCard) -> bool:
        """Whether ``card`` can run on this machine (tiny models run anywhere)."""
        if card.dev:
            return True
        if self.gpu_gb is None:
            return card.runs_on_cpu
        return card.min_vram_gb <= self.gpu_gb

    def rank(self, card: ModelCard) -> int:
        """Where ``card`` goes in its tab's list (lower first; ties keep the cards' order)."""
        if self.mode == FULL:
            return 0 if self.fits(card) else 1
        if self.mode == DEV:
            return 0 if card.dev else 1 if self.fits(card) else 2
        if not card.dev and self.fits(card) and card.id in self.ready:
            return 0
        return 1 if card.dev else 2 if self.fits(card) else 3

    def cards(self, task: str) -> list[ModelCard]:
        """The models of the tab ``task``, the one it opens on first."""
        cards = cards_for(task, dev=self.mode != FULL)
        return sorted(cards, key=self.rank)

    def notice(self) -> str:
        """What the page says about the models it opened on ('' on a machine that runs the real ones)."""
        if self.mode == FULL:
            return ""
        if self.mode == DEV:
            return "**Developer mode (`--dev`)**: every tab opens on a tiny test model (random weights)."
        if self.gpu_gb is None:
            why = "No CUDA GPU was found"
        else:
            why = f"The GPU's {self.gpu_gb:.0f} GB is less than the real text-to-video models need"
        lines = [
            f"**{why}, so each tab opens on a model that runs here**: the tiny test models make a short clip"
            " of moving noise (random weights) in seconds, enough to try every tab. The real models stay in"
            " each tab's Model list (download them in the Models tab); the lightest of each tab:",
        ]
        for task in TAB_TASKS:
            real = [c for c in cards_for(task) if not c.dev]
            if real:
                lightest = min(real, key=lambda c: (c.min_vram_gb, c.download_gb, c.order))
                lines.append(f"- {TAB_NAMES[task]}: {lightest.name}, {needs_text(lightest)}")
        return "\n".join(lines)


def decide_lineup(
    dev: bool, gpu_memory_gb: list[float], lends_gpu: bool, is_ready: Callable[[ModelCard], bool]
) -> Lineup:
    """The lineup for a machine whose GPUs have ``gpu_memory_gb``, with ``--dev`` or not. ``lends_gpu``: a
    Space, whose owner chose its hardware for the real models (ZeroGPU lends a GPU per job), counts as
    fitting. ``is_ready`` says whether a model's weights are here (asked in light mode, for the real models
    that fit)."""
    gpu_gb = max(gpu_memory_gb) if gpu_memory_gb else None
    if dev:
        return Lineup(DEV, gpu_gb)
    if lends_gpu or any(gpu_gb is not None and c.min_vram_gb <= gpu_gb for c in cards_for("t2v")):
        return Lineup(FULL, gpu_gb)
    light = Lineup(LIGHT, gpu_gb)
    fitting = [c for task in TAB_TASKS for c in cards_for(task) if light.fits(c)]
    return Lineup(LIGHT, gpu_gb, frozenset(c.id for c in fitting if is_ready(c)))


def machine_lineup(settings: Settings, hardware: Hardware | None, lends_gpu: bool = False) -> Lineup:
    """The lineup for this machine's ``hardware`` (None: unknown, as no GPU) and ``settings`` (--dev, the
    models folder the real models' weights are looked for in)."""

    def is_ready(card: ModelCard) -> bool:
        return model_status(card, settings).state == "ready"

    gpus = [gpu.total_gb for gpu in hardware.gpus] if hardware is not None else []
    return decide_lineup(settings.dev, gpus, lends_gpu, is_ready)
