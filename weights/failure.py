"""A failed download in one or two sentences a user can act on: what failed (no connection, access refused,
repo or file not found, a hub error) and what to try; the hubs' full errors go to the log."""

from __future__ import annotations

import logging
from pathlib import Path

from weights.progress import human_bytes
from weights.registry import ModelCard

log = logging.getLogger(__name__)

NETWORK_HINTS = (
    "connecterror",
    "connectionerror",
    "connecttimeout",
    "nameresolution",
    "name or service not known",
    "temporary failure in name resolution",
    "max retries",
    "timed out",
    "timeout",
    "network is unreachable",
    "connection refused",
    "connection reset",
    "offlinemodeisenabled",
)
ACCESS_HINTS = ("gatedrepo", "401", "403", "unauthorized", "forbidden", "access to model")
MISSING_HINTS = ("repositorynotfound", "entrynotfound", "404", "not found")


def failure_text(error: BaseException) -> str:
    """``error`` and its causes as one lower-case text, to classify."""
    parts = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 8:
        parts.append(f"{type(seen).__name__} {seen}")
        seen = seen.__cause__ or seen.__context__
    return " ".join(parts).lower()


def failure_kind(errors: list[BaseException]) -> str:
    """``network``, ``access``, ``missing`` or ``other``: what the hubs' errors have in common."""
    texts = [failure_text(e) for e in errors]
    for kind, hints in (("access", ACCESS_HINTS), ("missing", MISSING_HINTS), ("network", NETWORK_HINTS)):
        if texts and any(any(h in t for h in hints) for t in texts):
            return kind
    return "other"


def kept_bytes(folder: Path) -> int:
    """Bytes of the model's files in ``folder`` (partial transfers included), 0 when there is none."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def download_failure_message(card: ModelCard, folder: Path, errors: list[BaseException]) -> str:
    """What to tell the user when no hub delivered ``card`` (the hubs' errors are logged in full)."""
    for error in errors:
        log.warning("download of %s failed: %s", card.id, error, exc_info=error)
    repo = card.huggingface or card.modelscope or "its repo"
    place = f"or download {repo} elsewhere, put its files in {folder} and start the app with --offline"
    kind = failure_kind(errors)
    if kind == "network":
        what = (
            "could not reach Hugging Face or ModelScope. Check the internet connection (a proxy: "
            f"HTTPS_PROXY), set HF_ENDPOINT to a Hugging Face mirror, {place}."
        )
    elif kind == "access":
        what = (
            f"the hub refused access to {repo} (a gated repo needs its terms accepted on its page). Set "
            f"HF_TOKEN to a token of an account that has access (or run `hf auth login`), {place}."
        )
    elif kind == "missing":
        what = f"{repo} or one of its files was not found on the hubs. Check HF_ENDPOINT, {place}."
    else:
        reason = " | ".join(str(e).splitlines()[0] for e in errors) or "the card names no hub repo"
        what = f"{reason}. Try again later, set HF_ENDPOINT to a mirror, {place}."
    kept = kept_bytes(folder)
    resume = f" {human_bytes(kept)} arrived and is kept in {folder}; it resumes next time." if kept else ""
    return f"Could not download {card.name}: {what}{resume} Nothing was marked ready (details in the log)."
