"""The app's layout: one tab per task, and the system panel."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.exceptions import ComponentProcessingError

from core.facade import ConfigError, Facade, Studio, readable_error
from ui.batch_tab import build_batch_tab
from ui.chain_tab import build_chain_tab
from ui.compare_tab import build_compare_tab
from ui.continue_tab import build_continue_tab
from ui.history_tab import build_history_tab
from ui.i2v_tab import build_i2v_tab
from ui.jobs import cancel_job
from ui.loras_section import build_loras_section
from ui.models_tab import build_models_tab
from ui.queue_panel import build_queue_panel
from ui.remember import wire_rerun_fill, wire_settings_memory
from ui.t2v_tab import build_t2v_tab
from ui.upscale_tab import build_upscale_tab

UPLOAD_SWEEP = (3600, 86400)
"""(every how many seconds, files older than how many seconds) for Gradio's temp-folder cleaning."""


def send_to(tab: str) -> Callable[[str | None], tuple[Any, gr.Tabs]]:
    """An event that puts a result video into another tab's input and switches to that tab."""

    def send(video: str | None) -> tuple[Any, gr.Tabs]:
        if not video:
            raise gr.Error("Make a video first.")
        return video, gr.Tabs(selected=tab)

    return send


def last_frame_to(facade: Facade) -> Callable[[str | None], tuple[str, gr.Tabs]]:
    """An event that makes a result video's last frame the Image to video tab's start image."""

    def send(video: str | None) -> tuple[str, gr.Tabs]:
        if not video:
            raise gr.Error("Make a video first.")
        return facade.frame_as_image(video), gr.Tabs(selected="i2v")

    return send


def input_name(block_fn: Any, index: int) -> str:
    """The API parameter name of an event's ``index``-th input (else its label), for error messages."""
    names = getattr(block_fn, "input_parameter_names", None) or []
    if index < len(names) and names[index]:
        return names[index]
    block = block_fn.inputs[index] if index < len(block_fn.inputs) else None
    return getattr(block, "label", None) or f"input {index + 1}"


def bad_input_message(block_fn: Any, inputs: list[Any], error: ComponentProcessingError) -> str:
    """``error`` (Gradio could not read an input, e.g. text for a number) as a line naming the input."""
    cause = error.__cause__ or error
    found = re.search(r"component at index (\d+)", str(error))
    index = int(found.group(1)) if found else -1
    if not 0 <= index < len(block_fn.inputs):
        return f"an input has the wrong type: {cause}"
    name, block = input_name(block_fn, index), block_fn.inputs[index]
    value = inputs[index] if index < len(inputs) else None
    if isinstance(block, (gr.Number, gr.Slider)):
        return f"{name} must be a number, got {value!r}"
    if isinstance(block, gr.Image):
        return f"{name} is not a picture this app can read; use a JPEG, PNG, WebP, GIF, BMP or TIFF file"
    return f"{name} has the wrong type ({value!r}): {cause}"


class StudioBlocks(gr.Blocks):
    """gr.Blocks whose errors say what is wrong, in the UI and to API clients: an input of the wrong
    type names the input; a handler's error is its message (with the class name only for unexpected
    ones), never Gradio's "has not enabled verbose error reporting"."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        """Too few inputs (a raw REST call): which are missing, by API name, without Gradio's dump of
        component objects and memory addresses."""
        if len(inputs) < len(block_fn.inputs):
            missing = [input_name(block_fn, index) for index in range(len(inputs), len(block_fn.inputs))]
            raise gr.Error(
                f"missing input(s): {', '.join(missing)} (got {len(inputs)} of {len(block_fn.inputs)}); "
                "pass every input in order (gradio_client fills in the defaults)",
                title="Bad request",
            )

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except ComponentProcessingError as exc:
            raise gr.Error(bad_input_message(block_fn, inputs, exc), title="Bad request") from exc

    async def call_function(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().call_function(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # Gradio still prints the traceback (with this cause) to the server's log
            title = "Bad request" if isinstance(exc, ConfigError) else "Error"
            raise gr.Error(readable_error(exc), title=title) from exc


def build_app(studio: Studio, share_warning: bool = False, warning: str = "") -> gr.Blocks:
    """The whole Gradio app for ``studio``, which it reaches through the facade; ``warning``: shown at
    the top of the page (e.g. reachable by others without a login)."""
    facade = Facade(studio)
    # Uploads live in Gradio's temp folder: swept hourly of files older than a day, and at shutdown.
    with StudioBlocks(title="Video Studio", delete_cache=UPLOAD_SWEEP) as demo:
        gr.Markdown("# Video Studio\nText or image to video, continuation and upscaling on your own machine.")
        if share_warning and not warning:
            warning = "this app is shared without a password; anyone with the link can use the GPU"
        if warning:
            gr.Markdown(f"## ⚠️ Warning: {warning}.", elem_id="exposure-warning")
        notice = facade.lineup_notice()
        if notice:
            gr.Markdown(notice, elem_id="lineup-notice")
        with gr.Tabs() as tabs:
            with gr.Tab("Text to video", id="t2v"):
                t2v = build_t2v_tab(facade)
            with gr.Tab("Image to video", id="i2v"):
                image = build_i2v_tab(facade)
            with gr.Tab("Continue video", id="continue"):
                extend = build_continue_tab(facade)
            with gr.Tab("Upscale", id="upscale"):
                upscale = build_upscale_tab(facade)
            with gr.Tab("Long video", id="long_video"):
                long_video = build_chain_tab(facade)
            with gr.Tab("Batch", id="batch"):
                build_batch_tab(facade)
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(facade)
            with gr.Tab("History", id="history"):
                rerun = build_history_tab(facade)
            with gr.Tab("Models", id="models"):
                build_models_tab(facade.downloads)
                build_loras_section(facade.loras)
        to_image = last_frame_to(facade)

        def send_to_continue(video: str | None, model: str | None) -> tuple[Any, Any, gr.Tabs]:
            """ "Continue this": the video, a continuation model that suits it, the Continue tab."""
            sent, tab = send_to("continue")(video)
            return sent, facade.continuation_for(video, model), tab

        for result in (t2v, image.result, extend.result, upscale.result, long_video):
            result.to_continue.click(
                send_to_continue,
                [result.video, extend.model],
                [extend.source, extend.model, tabs],
                api_name=False,
            )
            result.to_upscale.click(send_to("upscale"), result.video, [upscale.source, tabs], api_name=False)
            result.to_image.click(to_image, result.video, [image.start_image, tabs], api_name=False)
        wire_settings_memory(facade, demo)
        wire_rerun_fill(facade, demo, rerun.events, rerun.form, tabs)
        with gr.Accordion("System", open=False):
            gr.Markdown(facade.system_summary())
            build_queue_panel(facade)

        def cancel_one_job(job_id: str, request: gr.Request) -> str:
            """Cancel one job by its id (details["job_id"] of a /t2v, /i2v, /continue, /upscale or /long_video
            call of this client); its own call then returns the cancelled status. Unlike gradio_client's
            Job.cancel(), which cancels every call of the client to the same endpoint."""
            return cancel_job(facade, job_id, getattr(request, "session_hash", None))

        gr.api(cancel_one_job, api_name="cancel_job", concurrency_limit=None)
    return demo
