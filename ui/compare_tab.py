"""Compare tab: two videos side by side, PSNR / SSIM per frame plotted, and their means."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from core.metrics import Comparison, compare_videos, side_by_side
from core.outputs import reserved_output_path
from core.studio import Studio


def comparison_frame(result: Comparison) -> pd.DataFrame:
    """Per-frame values in long form (frame, metric, value) for one LinePlot."""
    rows = [("PSNR dB", v) for v in result.psnr] + [("SSIM x100", 100 * v) for v in result.ssim]
    if result.lpips:
        rows += [("LPIPS x100", 100 * v) for v in result.lpips]
    count = result.frames
    return pd.DataFrame(
        {
            "frame": [i % count for i in range(len(rows))],
            "metric": [name for name, _ in rows],
            "value": [value for _, value in rows],
        }
    )


def build_compare_tab(studio: Studio) -> None:
    """Create the tab inside the caller's ``gr.Tab``."""
    folder = studio.settings.outputs_dir / "compare"

    def run_compare(video_a: str | None, video_b: str | None) -> tuple[pd.DataFrame, dict[str, object], str]:
        """The plot data, the means (with notes) of B against A, and both in one synced video."""
        if not video_a or not video_b:
            raise gr.Error("Choose two videos to compare.")
        try:
            result = compare_videos(video_a, video_b)
            title = f"{Path(video_a).stem} vs {Path(video_b).stem}"
            with reserved_output_path(folder, "compare", title) as output:
                together = side_by_side(video_a, video_b, output)
        except (OSError, ValueError) as exc:
            raise gr.Error(f"Cannot compare these videos: {exc}") from exc
        return comparison_frame(result), result.summary(), str(together)

    with gr.Row():
        video_a = gr.Video(label="Video A (reference)", sources=["upload"])
        video_b = gr.Video(label="Video B", sources=["upload"])
    button = gr.Button("Compare", variant="primary")
    synced = gr.Video(label="A | B side by side (plays in step)", interactive=False)
    plot = gr.LinePlot(x="frame", y="value", color="metric", title="Per frame", label="Per-frame metrics")
    means = gr.JSON(label="Averages (PSNR of identical frames is reported as 100 dB)")
    button.click(run_compare, [video_a, video_b], [plot, means, synced], api_name="compare")
