"""The loras folder as the app shows it: its files, a download by Hub file or URL (resumable and verified,
through the same path a request's LoRA takes), and a picked file added to a LoRAs box."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open

from core.lora.library import file_sha256, list_loras, resolve_lora
from core.lora.spec import LORA_SUFFIX, LoraSpec
from core.settings import Settings
from core.validation import ConfigError
from weights.progress import DownloadProgress, human_bytes

HEADERS = ["LoRA", "Size", "SHA-256"]
HUB_PAGE = re.compile(r"https?://(?:www\.)?huggingface\.co/([^/]+/[^/]+)/(?:blob|resolve)/[^/]+/(.+)")
"""A Hub file's page or download link: the repo and the file's path in it."""
SOURCE_HELP = (
    "A Hub file as owner/repo/path/file.safetensors (or its huggingface.co link), or a direct https URL"
)


def parse_source(source: str, sha256: str | None = None) -> LoraSpec:
    """The LoRA entry a download box's text names: a Hub file (``owner/repo/path.safetensors`` or its page
    link) or a plain URL, with an optional SHA-256 to verify against."""
    text = (source or "").strip()
    digest = (sha256 or "").strip().lower() or None
    if not text:
        raise ConfigError(f"Give the LoRA to download: {SOURCE_HELP}")
    page = HUB_PAGE.fullmatch(text)
    if page:
        return LoraSpec(name=page.group(2), repo=page.group(1), sha256=digest)
    if text.startswith(("http://", "https://")):
        name = text.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        return LoraSpec(name=name or "lora", url=text, sha256=digest)
    parts = text.split("/")
    if len(parts) < 3 or not all(parts):
        raise ConfigError(f"{text!r} names no file: {SOURCE_HELP}")
    if not text.endswith(LORA_SUFFIX):
        raise ConfigError(f"{text!r} is not a {LORA_SUFFIX} file: LoRAs are shared as {LORA_SUFFIX}")
    return LoraSpec(name="/".join(parts[2:]), repo="/".join(parts[:2]), sha256=digest)


def refuse_non_lora(path: Path) -> None:
    """Remove ``path`` and say so when it is no safetensors file of LoRA weights."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"{path.name} is not a safetensors file ({exc}); check the link") from exc
    if not any("lora" in key or key.endswith(".diff") for key in keys):
        path.unlink(missing_ok=True)
        raise ConfigError(
            f"{path.name} holds no LoRA weights (no lora_A/lora_down keys): it looks like a full model, "
            "not a LoRA; removed it"
        )


def add_to_box(text: str | None, name: str | None) -> str:
    """The LoRAs box's ``name:strength`` list with ``name`` added at strength 1 (unchanged when it is
    there already or nothing was picked)."""
    entries = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not name or any(entry.split(":")[0] == name for entry in entries):
        return ", ".join(entries)
    return ", ".join([*entries, f"{name}:1"])


class LoraFiles:
    """The app's loras folder: list, download into it; ``can_download`` is off when the app is offline."""

    headers = HEADERS
    source_help = SOURCE_HELP

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def folder(self) -> Path:
        return Path(self.settings.loras_dir)

    @property
    def can_download(self) -> bool:
        return not self.settings.offline

    def note(self) -> str:
        offline = " The app is offline: downloads are disabled." if self.settings.offline else ""
        return (
            f"LoRAs live in `{self.folder}` (`--loras-dir`); put .safetensors files there or download them "
            f"here, then add them in Text or Image to video's *Fast mode and LoRAs*.{offline}"
        )

    def choices(self) -> list[str]:
        return list_loras(self.folder)

    def rows(self) -> list[list[str]]:
        """One row per file: its name in the folder, size and SHA-256 (first 12 digits)."""
        rows = []
        for name in self.choices():
            path = self.folder / name
            rows.append([name, human_bytes(path.stat().st_size), file_sha256(path)[:12]])
        return rows

    def download(
        self, source: str, sha256: str | None, on_progress: Callable[[DownloadProgress], None]
    ) -> str:
        """Fetch the LoRA ``source`` names into the folder (verified, resumable); the message for the end."""
        if not self.can_download:
            raise ConfigError(
                "The app is offline (--offline): put the LoRA file into the loras folder instead"
            )
        spec = parse_source(source, sha256)
        resolved = resolve_lora(spec, self.folder, on_progress=on_progress)
        refuse_non_lora(resolved.path)
        return (
            f"Downloaded {resolved.path.name} ({human_bytes(resolved.path.stat().st_size)}, SHA-256 "
            f"{resolved.sha256[:12]}…): add it in the LoRAs box as `{resolved.path.name}:1`"
        )
