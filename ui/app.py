"""The app's layout: one tab per task, and the system panel."""

from __future__ import annotations

import gradio as gr

from core.studio import Studio
from ui.models_tab import build_models_tab
from ui.t2v_tab import build_t2v_tab

COMING = {
    "Continue video": "Extend a clip chunk by chunk (SkyReels-V2 Diffusion Forcing), the new part flowing on "
    "from the old.",
    "Upscale": "Streaming 2x/4x video super-resolution with FlashVSR v1.1.",
}


def build_app(studio: Studio, share_warning: bool = False) -> gr.Blocks:
    """The whole Gradio app for ``studio``."""
    with gr.Blocks(title="Video Studio") as demo:
        gr.Markdown("# Video Studio\nText to video, continuation and upscaling on your own GPU.")
        if share_warning:
            gr.Markdown(
                "**Warning:** this app is shared without a password; anyone with the link can use the GPU."
            )
        with gr.Tab("Text to video"):
            build_t2v_tab(studio)
        for title, text in COMING.items():
            with gr.Tab(title):
                gr.Markdown(f"**Not installed yet.** {text} This tab will work once the feature lands.")
        with gr.Tab("Models"):
            build_models_tab(studio.settings, studio.settings.dev)
        with gr.Accordion("System", open=False):
            gr.Markdown(f"```\n{studio.hardware.summary()}\n```\nOutputs: `{studio.settings.outputs_dir}`")
    return demo
