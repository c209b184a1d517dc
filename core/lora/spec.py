"""What a request asks of LoRAs: a list of entries, each a file in the loras folder (or a Hub file or URL
fetched into it), a strength and, for Wan2.2 A14B, which expert it goes into."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.validation import ConfigError, as_choice, as_float, as_text

EXPERTS = ("both", "high", "low")
"""Wan2.2 A14B: "high" is the high-noise ``transformer``, "low" the low-noise ``transformer_2``."""
LORA_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA of a request. ``name``: a file in the loras folder (``.safetensors`` may be left off);
    ``repo`` + ``name`` (a file of that Hub repo) or ``url`` fetch it there first. ``sha256``, when given
    (a rerun), must match the file. ``fuse``: merged into the DiT's weights where they sit whole in a
    float dtype (memory levels 0-3), so it costs nothing per step, but another set of fused LoRAs loads
    the model anew; unfused LoRAs run beside the weights and swap in place (the few-step presets fuse
    their step-distill LoRAs)."""

    name: str
    strength: float = 1.0
    expert: str = "both"
    repo: str | None = None
    url: str | None = None
    sha256: str | None = None
    fuse: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        name = as_text("LoRA name", self.name, required=True, max_length=400).strip()
        if self.repo is None and self.url is None and (".." in name.split("/") or name.startswith("/")):
            raise ConfigError(
                f"LoRA {name!r}: give a file name inside the loras folder, not a path out of it"
            )
        set_(self, "name", name)
        set_(self, "strength", as_float(f"LoRA {name} strength", self.strength, low=-10.0, high=10.0))
        set_(self, "expert", as_choice(f"LoRA {name} expert", self.expert, EXPERTS))
        if self.url is not None and not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(f"LoRA {name}: url must start with http:// or https://, got {self.url!r}")
        if not isinstance(self.fuse, bool):
            raise ConfigError(f"LoRA {name}: fuse must be true or false, got {self.fuse!r}")

    @property
    def file_name(self) -> str:
        """The file's name in the loras folder (a Hub file keeps its repo folders flattened)."""
        base = self.name.replace("/", "__") if (self.repo or self.url) else self.name
        return base if base.endswith(LORA_SUFFIX) else base + LORA_SUFFIX

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and (k != "fuse" or v)}


def parse_loras(value: Any) -> tuple[LoraSpec, ...]:
    """The request's ``loras`` field: None or a list of mappings (``name`` or ``file``, ``strength``,
    ``expert``, optional ``repo``/``url``/``sha256``/``fuse``)."""
    if value is None or value == "":
        return ()
    if isinstance(value, dict) or not isinstance(value, list | tuple):
        raise ConfigError("loras must be a list of {name, strength, expert} entries")
    specs = []
    for entry in value:
        if isinstance(entry, LoraSpec):
            specs.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"each LoRA must be a mapping with a name, got {entry!r}")
        data = dict(entry)
        if "file" in data:
            data.setdefault("name", data.pop("file"))
        unknown = set(data) - {"name", "strength", "expert", "repo", "url", "sha256", "fuse"}
        if unknown:
            raise ConfigError(
                f"LoRA entry: unknown keys {sorted(unknown)} (name, strength, expert, repo, url, fuse)"
            )
        if "name" not in data:
            raise ConfigError("each LoRA needs a name (a file in the loras folder)")
        specs.append(LoraSpec(**data))
    return tuple(specs)


def check_experts(specs: tuple[LoraSpec, ...], has_two_experts: bool, model_name: str) -> None:
    """Refuse an expert choice the model has no use for (only Wan2.2 A14B has two experts)."""
    if has_two_experts:
        return
    for spec in specs:
        if spec.expert != "both":
            raise ConfigError(
                f"LoRA {spec.name}: expert {spec.expert!r} is for Wan2.2 A14B's two experts; "
                f"{model_name} has one DiT (leave expert as 'both')"
            )
