"""Model cards: one YAML file per model in ``presets/models``, validated into :class:`ModelCard`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core.validation import ConfigError, as_choice, as_float, as_int, as_text, from_mapping
from weights.card_facts import Architecture, CacheFacts, parse_arch, parse_caches
from weights.few_step import FewStep, parse_few_step
from weights.preview_decoder import preview_decoder

CARDS_DIR = Path(__file__).resolve().parent.parent / "presets" / "models"
TASKS = ("t2v", "i2v", "continue", "upscale")
HUBS = ("huggingface", "modelscope")


@dataclass(frozen=True)
class Resolution:
    """A named output size with the flow shift that suits it."""

    name: str
    width: int
    height: int
    flow_shift: float | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.width}x{self.height})"


@dataclass(frozen=True)
class Defaults:
    """Default generation settings shown in the UI for a model."""

    resolution: str
    frames: int
    steps: int
    guidance: float
    guidance_2: float | None = None
    negative_prompt: str = ""


@dataclass(frozen=True)
class ModelCard:
    """Everything the app needs to know about one model: where it lives, how to run it, what it can do."""

    id: str
    name: str
    task: str
    pipeline: str
    description: str
    fps: int
    size_multiple: int
    max_frames: int
    defaults: Defaults
    resolutions: tuple[Resolution, ...]
    huggingface: str | None = None
    modelscope: str | None = None
    allow_patterns: tuple[str, ...] = ()
    params_billion: float = 0.0
    min_vram_gb: float = 0.0
    download_gb: float = 0.0
    """About how much the download weighs (the repo's files the card fetches, at their stored precision)."""
    runs_on_cpu: bool = False
    """Whether the model is light enough to be useful on a machine without a CUDA GPU."""
    dev: bool = False
    builder: str | None = None
    prefer: str = "huggingface"
    extra: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    """Further tabs the model serves besides its main ``task`` (e.g. MAGI-1: t2v and continue)."""
    order: int = 0
    """Position in the model lists (ascending, then file name): the first card of a tab is its default."""
    arch: Architecture | None = None
    """The DiT and VAE facts (``weights.card_facts``); every text-to-video and continuation card has them."""
    caches: CacheFacts = field(default_factory=CacheFacts)
    """The step caches' facts for this model (TeaCache fit, MagCache ratios, speed thresholds)."""
    few_step: FewStep | None = None
    """The authors' few-step settings (``weights.few_step``); None: the model has no few-step mode."""
    preview_decoder: str | None = None
    """The tiny decoder of its latent space for live previews (``presets/preview_decoders.yaml``)."""

    def __post_init__(self) -> None:
        as_choice(f"model {self.id}: task", self.task, TASKS)
        for task in self.tasks:
            as_choice(f"model {self.id}: tasks", task, TASKS)
        as_choice(f"model {self.id}: prefer", self.prefer, HUBS)
        if not (self.huggingface or self.modelscope or self.builder):
            raise ConfigError(f"model {self.id}: needs a huggingface or modelscope repo, or a builder")
        if self.arch is None and any(self.serves(task) for task in ("t2v", "i2v", "continue")):
            raise ConfigError(f"model {self.id}: a video generation model needs its arch facts")
        names = [r.name for r in self.resolutions]
        if self.defaults.resolution not in names:
            raise ConfigError(
                f"model {self.id}: default resolution {self.defaults.resolution!r} not in {names}"
            )
        for res in self.resolutions:
            if res.width % self.size_multiple or res.height % self.size_multiple:
                raise ConfigError(f"model {self.id}: {res.label} is not a multiple of {self.size_multiple}")

    def architecture(self) -> Architecture:
        """The card's arch facts, or a clear error naming the file to add them to."""
        if self.arch is None:
            raise ConfigError(f"{self.name} has no arch facts; add them to presets/models/ ({self.id})")
        return self.arch

    @property
    def hardware_label(self) -> str:
        """What the model needs to run, e.g. "GPU 8 GB+" ("any CPU" for the tiny test models)."""
        if self.dev:
            return "any CPU (seconds)"
        return "GPU or CPU" if self.runs_on_cpu else f"GPU {self.min_vram_gb:g} GB+"

    @property
    def download_label(self) -> str:
        """About how much its download weighs ("built locally" for the tiny test models, "?" unknown)."""
        if self.builder:
            return "built locally"
        size = self.download_gb
        return "?" if not size else f"~{size * 1024:.0f} MB" if size < 1 else f"~{size:g} GB"

    def serves(self, task: str) -> bool:
        """Whether the model can run ``task`` (its main task or one of ``tasks``)."""
        return task == self.task or task in self.tasks

    def resolution(self, name: str) -> Resolution:
        """The resolution preset called ``name``."""
        for res in self.resolutions:
            if res.name == name:
                return res
        raise ConfigError(
            f"{self.name} has no resolution {name!r}; choose one of {[r.name for r in self.resolutions]}"
        )


def parse_card(data: dict[str, Any], *, where: str) -> ModelCard:
    """Validate one card's raw YAML data."""
    data = dict(data)
    where_id = f"{where} ({data.get('id', '?')})"
    data["defaults"] = from_mapping(Defaults, data.get("defaults", {}), where=f"{where_id} defaults")
    data["resolutions"] = tuple(
        from_mapping(Resolution, r, where=f"{where_id} resolution") for r in data.get("resolutions", ())
    )
    data["allow_patterns"] = tuple(data.get("allow_patterns", ()))
    data["tasks"] = tuple(data.get("tasks", ()))
    if data.get("arch") is not None:
        data["arch"] = parse_arch(data["arch"], where=where_id)
    data["caches"] = parse_caches(data.get("caches") or {}, where=where_id)
    data["few_step"] = parse_few_step(data.get("few_step"), where=where_id)
    if data.get("preview_decoder") is not None:
        preview_decoder(data["preview_decoder"])
    card = from_mapping(ModelCard, data, where=where_id)
    as_text(f"{where_id} name", card.name, required=True)
    as_int(f"{where_id} fps", card.fps, low=1, high=240)
    as_int(f"{where_id} max_frames", card.max_frames, low=1)
    for res in card.resolutions:
        as_int(f"{where_id} width", res.width, low=16, high=8192)
        as_int(f"{where_id} height", res.height, low=16, high=8192)
    as_float(f"{where_id} params_billion", card.params_billion, low=0)
    as_float(f"{where_id} download_gb", card.download_gb, low=0)
    as_int(f"{where_id} order", card.order)
    return card


@lru_cache(maxsize=4)
def load_cards(folder: Path = CARDS_DIR) -> dict[str, ModelCard]:
    """All model cards in ``folder`` keyed by id, in file-name order."""
    cards: dict[str, ModelCard] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        card = parse_card(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, where=path.name)
        if card.id in cards:
            raise ConfigError(f"{path.name}: duplicate model id {card.id!r}")
        cards[card.id] = card
    return cards


def cards_for(task: str, *, dev: bool = False) -> list[ModelCard]:
    """The cards of one task (by ``order``, then file name); test models only when ``dev`` is set."""
    cards = [c for c in load_cards().values() if c.serves(task) and (dev or not c.dev)]
    return sorted(cards, key=lambda card: card.order)


def get_card(model_id: str) -> ModelCard:
    """The card called ``model_id``, or a clear error listing the known ids."""
    cards = load_cards()
    if model_id not in cards:
        raise ConfigError(f"unknown model {model_id!r}; known models: {', '.join(cards)}")
    return cards[model_id]
