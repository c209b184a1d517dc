"""Each tab's form for a chosen model, decided from its card: which fields apply (MAGI-1 counts chunks and
has a window and KV budget; Wan and SkyReels have frames, a negative prompt, a shift, step caches and
memory levels), their limits, defaults and help. ``form_for(task, model_id)`` is what the UI loads into
its components when the model changes; ``build_form`` adds the limits every model of the tab shares."""

from __future__ import annotations

from collections.abc import Callable

from core.facade.fields import Field, Form, number_choices, shown
from core.facade.text import chunks_label, seconds_label, upscale_engine
from core.lineup import needs_text
from core.magi.request import FIELD_HELP as MAGI_HELP
from core.magi.request import MAX_WINDOW, chunk_frames, default_window, is_magi_card
from core.tasks.i2v import end_image_mode
from core.tasks.t2v import snap_frames
from weights.registry import ModelCard, get_card


def default_chunks(card: ModelCard) -> int:
    """The chunks a MAGI-1 form starts at (its default frames in whole chunks; 4 for other models)."""
    return max(1, card.defaults.frames // chunk_frames(card)) if is_magi_card(card) else 4


def about_field(card: ModelCard) -> Field:
    """The model's description and what it needs (GPU memory, download size)."""
    return Field(value=f"{card.description}\n\nNeeds: {needs_text(card)}.")


def resolution_field(card: ModelCard) -> Field:
    return Field(
        choices=[r.label for r in card.resolutions], value=card.resolution(card.defaults.resolution).label
    )


def sampling_fields(card: ModelCard) -> Form:
    """Steps, guidance, negative prompt, description and the MAGI-1 window, shared by the Text to video and
    Continue forms; MAGI-1 has no negative prompt."""
    d, magi = card.defaults, is_magi_card(card)
    return {
        "step_count": Field(value=d.steps),
        "guidance_scale": Field(value=d.guidance),
        "negative_text": Field(value=d.negative_prompt, visible=not magi),
        "about": about_field(card),
        "flow_shift": shown(not magi),
        "memory": shown(not magi),
        "magi_options": shown(magi),
        "window": Field(value=default_window(card) if magi else MAX_WINDOW),
    }


def t2v_form(card: ModelCard) -> Form:
    """Text to video: frames (4k+1, within the model's limit) or MAGI-1's chunks."""
    d, magi = card.defaults, is_magi_card(card)
    chunks = default_chunks(card)
    frames = Field(value=d.frames, info=seconds_label(d.frames, card), visible=not magi)
    if not magi:
        frames = Field(**frames.props(), maximum=snap_frames(card.max_frames, card))
    return sampling_fields(card) | {
        "resolution_label": resolution_field(card),
        "frame_count": frames,
        "step_speed": shown(not magi),
        "chunks": Field(value=chunks, info=chunks_label(chunks, card) if magi else MAGI_HELP["chunks"]),
    }


MATCH_IMAGE = "Match the image (default size)"
"""The resolution choice that takes the model's default size in the picture's orientation."""
END_IMAGE_INFO = {
    "required": "This model makes the clip between the start and end images: add both.",
    "optional": "Optional: the clip ends on this picture.",
    None: "This model takes no end image (Wan2.1 FLF2V and Wan2.2 I2V A14B do).",
}


def i2v_form(card: ModelCard) -> Form:
    """Text to video's form for ``card`` plus its size choices (the picture's shape first) and whether it
    takes an end image."""
    mode = end_image_mode(card)
    return t2v_form(card) | {
        "resolution_label": Field(choices=[MATCH_IMAGE, *resolution_field(card).choices], value=MATCH_IMAGE),
        "end_image_path": shown(mode is not None),
        "end_image_note": Field(value=END_IMAGE_INFO[mode]),
    }


def continue_form(card: ModelCard) -> Form:
    """Continue video: the diffusion-forcing options, or MAGI-1's window and KV budget."""
    return sampling_fields(card) | {"forcing": shown(not is_magi_card(card))}


def chain_form(card: ModelCard) -> Form:
    """Long video's first clip: the model's presets and defaults (MAGI-1: whole 24-frame chunks, and
    MAGI-1 continues its own clip)."""
    d, magi = card.defaults, is_magi_card(card)
    step = chunk_frames(card) if magi else 4
    return {
        "resolution_label": resolution_field(card),
        "frame_count": Field(minimum=step if magi else 1, maximum=card.max_frames, value=d.frames, step=step),
        "step_count": Field(value=d.steps),
        "continue_id": Field(value=card.id) if magi and card.serves("continue") else Field(),
    }


def upscale_form(card: ModelCard) -> Form:
    """Upscale: the scales the model offers and FlashVSR's variant."""
    native = card.extra.get("scale", 4)
    flashvsr = upscale_engine(card.id) == "flashvsr"
    info = "FlashVSR is tuned for 4x" if flashvsr else f"the model upscales x{native}"
    return {
        "about": about_field(card),
        "scale_value": number_choices([s for s in (2, 4) if s <= native], native, info=info),
        "variant_value": shown(flashvsr),
    }


def split_field(model_id: str | None, several_gpus: bool) -> Field:
    """The "split over 2 GPUs" box: shown for a FlashVSR model on a studio with several GPUs, else hidden
    and cleared (Real-ESRGAN runs on one GPU)."""
    if several_gpus and model_id and upscale_engine(model_id) == "flashvsr":
        return Field(visible=True)
    return Field(visible=False, value=False)


FORMS: dict[str, Callable[[ModelCard], Form]] = {
    "t2v": t2v_form,
    "i2v": i2v_form,
    "continue": continue_form,
    "long_video": chain_form,
    "upscale": upscale_form,
}


def form_for(task: str, model_id: str, several_gpus: bool = False) -> Form:
    """The fields that change with the model of the tab ``task`` (its API name), from the model's card
    (``several_gpus``: the studio has several, so an upscale may split)."""
    form = FORMS[task](get_card(model_id))
    return form | {"split_gpus": split_field(model_id, several_gpus)} if task == "upscale" else form
