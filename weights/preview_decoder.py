"""The tiny preview decoders (``presets/preview_decoders.yaml``) a model card names with
``preview_decoder``: their facts (fetched by ``weights.preview_download``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from core.validation import ConfigError, as_int, as_text, from_mapping

FACTS_FILE = Path(__file__).resolve().parent.parent / "presets" / "preview_decoders.yaml"
GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class PreviewDecoder:
    """One decoder file: ``latent_channels`` it decodes, where it is published (``url``) and its git blob
    hash there (``git_sha1``), which verifies the download."""

    name: str
    file: str
    latent_channels: int
    about: str
    url: str = ""
    git_sha1: str = ""

    def __post_init__(self) -> None:
        as_text(f"preview decoder {self.name} file", self.file, required=True)
        if Path(self.file).name != self.file:
            raise ConfigError(f"preview decoder {self.name}: file must be a plain file name")
        as_int(f"preview decoder {self.name} latent_channels", self.latent_channels, low=1)
        if self.url and not GIT_SHA1.fullmatch(self.git_sha1):
            raise ConfigError(f"preview decoder {self.name}: a url needs the file's git_sha1 (40 hex digits)")


@lru_cache(maxsize=2)
def load_preview_decoders(path: Path = FACTS_FILE) -> dict[str, PreviewDecoder]:
    """Every preview decoder entry, by name."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return {
        name: from_mapping(PreviewDecoder, {"name": name, **entry}, where=f"{path.name} {name}")
        for name, entry in data.items()
    }


def preview_decoder(name: str) -> PreviewDecoder:
    """The entry called ``name``, or a clear error listing the known ones."""
    known = load_preview_decoders()
    if name not in known:
        raise ConfigError(f"unknown preview decoder {name!r}; known: {', '.join(known)}")
    return known[name]
