"""The Models tab's LoRAs section: the files in the loras folder and a download by Hub file or URL. The
rules (what a source may be, verification, refusing what is no LoRA) live in the facade's ``LoraFiles``."""

from __future__ import annotations

import gradio as gr

from core.facade import ConfigError, LoraFiles


def build_loras_section(loras: LoraFiles) -> None:
    """Create the section's components and events inside the caller's Models tab."""

    def download(
        source: str,
        sha256: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects progress through the default
    ) -> tuple[str, list[list[str]]]:
        try:
            message = loras.download(source, sha256, lambda p: progress(p.fraction, desc=p.describe()))
        except ConfigError as exc:
            raise gr.Error(str(exc)) from exc
        return message, loras.rows()

    gr.Markdown("### LoRAs")
    gr.Markdown(loras.note())
    table = gr.Dataframe(
        value=loras.rows(), headers=loras.headers, label="LoRAs on this machine", interactive=False
    )
    with gr.Row():
        source = gr.Textbox(label="Download a LoRA", info=loras.source_help, scale=3)
        sha256 = gr.Textbox(label="SHA-256 (optional)", info="checked after the download", scale=1)
    with gr.Row():
        download_btn = gr.Button("Download LoRA", variant="primary", interactive=loras.can_download)
        refresh = gr.Button("Refresh", scale=0)
    message = gr.Markdown()

    refresh.click(loras.rows, None, table, api_name="list_loras")
    gr.on(None, loras.rows, None, table, api_name=False)  # on page load
    download_btn.click(download, [source, sha256], [message, table], api_name="download_lora")
