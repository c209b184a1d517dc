"""Compare tab: two videos side by side, PSNR / SSIM per frame plotted, and their means."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.facade import ConfigError, Facade


def build_compare_tab(facade: Facade) -> None:
    """Create the tab inside the caller's ``gr.Tab``."""

    def run_compare(video_a: str | None, video_b: str | None) -> tuple[pd.DataFrame, dict[str, object], str]:
        """The plot data, the means (with notes) of B against A, and both in one synced video."""
        if not video_a or not video_b:
            raise gr.Error("Choose two videos to compare.")
        try:
            points, means, together = facade.compare(video_a, video_b)
        except ConfigError as exc:
            raise gr.Error(str(exc)) from exc
        return pd.DataFrame(points), means, together

    with gr.Row():
        video_a = gr.Video(label="Video A (reference)", sources=["upload"])
        video_b = gr.Video(label="Video B", sources=["upload"])
    button = gr.Button("Compare", variant="primary")
    synced = gr.Video(label="A | B side by side (plays in step)", interactive=False)
    plot = gr.LinePlot(
        x="frame", y="value", color="metric", title="Per frame", label="Per-frame metrics", x_axis_format="d"
    )
    means = gr.JSON(label="Averages (PSNR of identical frames is reported as 100 dB)")
    button.click(run_compare, [video_a, video_b], [plot, means, synced], api_name="compare")
