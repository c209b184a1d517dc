"""Models tab: what is on disk (state, size), and Download / Cancel / Delete with a live progress bar.
The downloads and their rules live in the facade's :class:`core.facade.ModelDownloads`."""

from __future__ import annotations

import gradio as gr

from core.facade import ConfigError, ModelDownloads


def build_models_tab(downloads: ModelDownloads) -> None:
    """Create the tab's components and events inside the caller's ``with gr.Tab("Models"):`` block.
    In a Space: state and size only, no folders, and no Delete (its visitors share its weights)."""

    def download(
        model_id: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> tuple[str, list[list[str]]]:
        try:
            message = downloads.download(model_id, lambda p: progress(p.fraction, desc=p.describe()))
        except ConfigError as exc:
            raise gr.Error(str(exc)) from exc
        return message, downloads.rows()

    def delete(model_id: str) -> tuple[str, list[list[str]]]:
        try:
            return downloads.delete(model_id), downloads.rows()
        except ConfigError as exc:
            raise gr.Error(str(exc)) from exc

    models = downloads.models()
    gr.Markdown(downloads.note())
    table = gr.Dataframe(
        value=downloads.rows(), headers=downloads.headers, label="Models on this machine", interactive=False
    )
    with gr.Row():
        model = gr.Dropdown(models, value=models[0][1] if models else None, label="Model")
        refresh = gr.Button("Refresh", scale=0)
    with gr.Row():
        download_btn = gr.Button("Download", variant="primary")
        cancel_btn = gr.Button("Cancel")
        delete_btn = gr.Button("Delete", variant="stop") if downloads.can_delete else None
    message = gr.Markdown(label="Message")

    refresh.click(downloads.rows, None, table, api_name="list_models")
    gr.on(None, downloads.rows, None, table, api_name=False)  # on page load
    download_btn.click(download, model, [message, table], api_name="download_model")
    cancel_btn.click(downloads.cancel, model, message, api_name="cancel_download")
    if delete_btn is not None:
        delete_btn.click(delete, model, [message, table], api_name="delete_model")
