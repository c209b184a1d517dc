"""The app's model downloads: what is on disk, one download per model at a time (each with its cancel
flag), delete. Every rule of the Models tab lives here; the tab shows the table and the messages."""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.jobs import JobCancelledError
from core.model_store import ensure_model
from core.settings import Settings
from core.validation import ConfigError
from weights import registry
from weights.download import DownloadError
from weights.progress import DownloadProgress, human_bytes
from weights.store import delete_model, list_models, model_status

HEADERS = ["Model", "Id", "State", "Size on disk", "Download", "Needs", "Where"]


class ModelDownloads:
    """The downloads running in this app, one cancel flag per model.

    ``in_space``: state and size only, no folders, and no delete (a Space's visitors share its weights).
    """

    def __init__(self, settings: Settings, dev: bool, in_space: bool = False) -> None:
        self.settings, self.dev, self.in_space = settings, dev, in_space
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    @property
    def headers(self) -> list[str]:
        return HEADERS[:-1] if self.in_space else HEADERS

    @property
    def can_delete(self) -> bool:
        return not self.in_space

    def models(self) -> list[tuple[str, str]]:
        """(name, id) of every model this app lists."""
        cards = registry.load_cards().values()
        return [(c.name, c.id) for c in cards if self.dev or not c.dev]

    def note(self) -> str:
        """Where weights live, and whether downloads are possible."""
        offline = " The app is offline: downloads are disabled." if self.settings.offline else ""
        where = "the models folder" if self.in_space else f"`{self.settings.models_dir}`"
        return f"Weights live in {where}; copies in the Hugging Face cache are reused.{offline}"

    def rows(self) -> list[list[str]]:
        """One table row per model: name, id, missing / partial / ready, size on disk, the download's size,
        what it needs to run, and where it was found unless in a Space (its folders mean nothing to
        visitors)."""
        rows = []
        for s in list_models(self.settings, dev=self.dev):
            card = registry.get_card(s.card_id)
            row = [s.name, s.card_id, s.state, s.size_label, card.download_label, card.hardware_label]
            rows.append(row if self.in_space else [*row, f"{s.where}: {s.folder}" if s.folder else ""])
        return rows

    def is_running(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._running

    def _start(self, model_id: str) -> threading.Event:
        with self._lock:
            if model_id in self._running:
                raise ConfigError(f"{model_id} is already downloading")
            flag = self._running[model_id] = threading.Event()
            return flag

    def _finish(self, model_id: str) -> None:
        with self._lock:
            self._running.pop(model_id, None)

    def download(self, model_id: str, on_progress: Callable[[DownloadProgress], None]) -> str:
        """Fetch ``model_id``'s weights (``on_progress`` with each update); the message for the end. A
        failed download raises ConfigError; a cancelled one says how to resume."""
        card = registry.get_card(model_id)
        cancel = self._start(model_id)
        try:
            folder = ensure_model(card, self.settings, on_progress=on_progress, should_cancel=cancel.is_set)
        except JobCancelledError:
            return f"{card.name}: cancelled. Download again to resume where it stopped."
        except DownloadError as exc:
            raise ConfigError(str(exc)) from exc
        finally:
            self._finish(model_id)
        return f"{card.name} is ready" + ("." if self.in_space else f" in `{folder}`.")

    def cancel(self, model_id: str) -> str:
        with self._lock:
            flag = self._running.get(model_id)
        if flag is None:
            return f"{model_id} is not downloading."
        flag.set()
        return "Cancelling…"

    def delete(self, model_id: str) -> str:
        """Remove ``model_id``'s weights from the models folder (not while it downloads)."""
        card = registry.get_card(model_id)
        if self.is_running(model_id):
            raise ConfigError(f"{card.name} is downloading; cancel it first")
        freed = delete_model(card, self.settings)
        folder = self.settings.models_dir
        if freed:
            return f"Deleted {card.name} from `{folder}` ({human_bytes(freed)} freed)."
        shared = model_status(card, self.settings).state == "ready"
        note = " Its Hugging Face cache copy is shared with other tools and was left alone." if shared else ""
        return f"Nothing of {card.name} in `{folder}`.{note}"
