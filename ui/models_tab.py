"""Models tab: what is on disk (state, size), and Download / Cancel / Delete with a live progress bar."""

from __future__ import annotations

import threading

import gradio as gr

from core.jobs import JobCancelledError
from core.model_store import ensure_model
from core.settings import Settings
from core.validation import ConfigError
from weights.download import DownloadError
from weights.progress import human_bytes
from weights.registry import get_card, load_cards
from weights.store import delete_model, list_models, model_status

HEADERS = ["Model", "Id", "State", "Size", "Where"]


def status_rows(settings: Settings, dev: bool, in_space: bool = False) -> list[list[str]]:
    """One table row per model: name, id, missing / partial / ready, size on disk, and where it was
    found unless ``in_space`` (a Space: its folders mean nothing to visitors)."""
    rows = []
    for s in list_models(settings, dev=dev):
        row = [s.name, s.card_id, s.state, s.size_label]
        rows.append(row if in_space else [*row, f"{s.where}: {s.folder}" if s.folder else ""])
    return rows


class Downloads:
    """The downloads running in this app, one cancel flag per model."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, threading.Event] = {}

    def start(self, model_id: str) -> threading.Event:
        with self.lock:
            if model_id in self.running:
                raise gr.Error(f"{model_id} is already downloading")
            flag = self.running[model_id] = threading.Event()
            return flag

    def finish(self, model_id: str) -> None:
        with self.lock:
            self.running.pop(model_id, None)

    def cancel(self, model_id: str) -> bool:
        with self.lock:
            flag = self.running.get(model_id)
        if flag is not None:
            flag.set()
        return flag is not None


def build_models_tab(settings: Settings, dev: bool, in_space: bool = False) -> None:
    """Create the tab's components and events inside the caller's ``with gr.Tab("Models"):`` block.

    ``in_space``: state and size only, no folders, and no Delete (a Space's visitors share its weights).
    """
    cards = [c for c in load_cards().values() if dev or not c.dev]
    downloads = Downloads()

    def rows() -> list[list[str]]:
        return status_rows(settings, dev, in_space)

    def download(
        model_id: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> tuple[str, list[list[str]]]:
        card = get_card(model_id)
        cancel = downloads.start(model_id)
        try:
            folder = ensure_model(
                card,
                settings,
                on_progress=lambda p: progress(p.fraction, desc=p.describe()),
                should_cancel=cancel.is_set,
            )
        except JobCancelledError:
            return f"{card.name}: cancelled. Download again to resume where it stopped.", rows()
        except (ConfigError, DownloadError) as exc:
            raise gr.Error(str(exc)) from exc
        finally:
            downloads.finish(model_id)
        return f"{card.name} is ready" + ("." if in_space else f" in `{folder}`."), rows()

    def cancel(model_id: str) -> str:
        return "Cancelling…" if downloads.cancel(model_id) else f"{model_id} is not downloading."

    def delete(model_id: str) -> tuple[str, list[list[str]]]:
        card = get_card(model_id)
        if model_id in downloads.running:
            raise gr.Error(f"{card.name} is downloading; cancel it first")
        freed = delete_model(card, settings)
        if freed:
            return f"Deleted {card.name} from `{settings.models_dir}` ({human_bytes(freed)} freed).", rows()
        shared = model_status(card, settings).state == "ready"
        note = " Its Hugging Face cache copy is shared with other tools and was left alone." if shared else ""
        return f"Nothing of {card.name} in `{settings.models_dir}`.{note}", rows()

    offline = " The app is offline: downloads are disabled." if settings.offline else ""
    where = "the models folder" if in_space else f"`{settings.models_dir}`"
    gr.Markdown(f"Weights live in {where}; copies in the Hugging Face cache are reused.{offline}")
    headers = HEADERS[:-1] if in_space else HEADERS
    table = gr.Dataframe(value=rows(), headers=headers, label="Models on this machine", interactive=False)
    with gr.Row():
        choices = [(c.name, c.id) for c in cards]
        model = gr.Dropdown(choices, value=cards[0].id if cards else None, label="Model")
        refresh = gr.Button("Refresh", scale=0)
    with gr.Row():
        download_btn = gr.Button("Download", variant="primary")
        cancel_btn = gr.Button("Cancel")
        delete_btn = None if in_space else gr.Button("Delete", variant="stop")
    message = gr.Markdown()

    refresh.click(rows, None, table, api_name="list_models")
    gr.on(None, rows, None, table, api_name=False)  # on page load
    download_btn.click(download, model, [message, table], api_name="download_model")
    cancel_btn.click(cancel, model, message, api_name="cancel_download")
    if delete_btn is not None:
        delete_btn.click(delete, model, [message, table], api_name="delete_model")
