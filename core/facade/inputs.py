"""Each job tab's inputs when the app starts: label, limits, default, choices and help of every field
(keyed by the tab's API parameter names, or a group's name), for the first model of the tab merged with
the limits all its models share. The UI lays them out; it decides none of them."""

from __future__ import annotations

from typing import Any

from core.continuation import FIELD_HELP as CONTINUE_HELP
from core.facade.few_step import few_step_fields
from core.facade.fields import SPEEDS, Field, Form, number_choices
from core.facade.forms import form_for
from core.facade.text import describe_input
from core.interpolate import INTERPOLATION_CHOICES
from core.magi.request import FIELD_HELP as MAGI_HELP
from core.memory.levels import AUTO, LEVELS
from core.speed.config import ATTENTION_CHOICES
from core.upscale.config import VARIANTS
from weights.registry import ModelCard

Props = dict[str, dict[str, Any]]
"""Component properties by field name."""

METHOD_LABELS = {
    "auto": "Auto (the preset's method)",
    "teacache": "TeaCache",
    "first_block": "First-block cache",
    "mag": "MagCache",
    "taylorseer": "TaylorSeer",
}
ATTENTION_LABELS = {
    "auto": "auto (fastest for this GPU)",
    "flash4": "FlashAttention-4 (Hopper/Blackwell)",
    "flash": "flash-attn 2",
    "cudnn": "cuDNN SDPA",
    "sdpa": "PyTorch SDPA",
}
TURBO_NOTE = (
    "fp8 linears and 8-bit attention (Ada/Hopper/Blackwell): 12-20% faster than the lossless default on "
    "an H100 (1.6x plain diffusers), with small changes in detail; off = lossless."
)
GPU_CHOICES = [("Auto", "auto"), ("One GPU", "one"), ("Split over all idle GPUs", "split")]
VARIANT_LABELS = {"tiny-long": "Tiny-Long (fast, any length)", "full": "Full (Wan2.1 VAE decoder)"}
UPSCALE_SCALE_INFO = "FlashVSR is tuned for 4x"


def level_choices() -> list[tuple[str, str]]:
    """Memory level entries (label, value): "Auto" then each level; values are "auto" or the level as text."""
    levels = [(f"{lv.number}: {lv.label}", str(lv.number)) for lv in LEVELS]
    return [("Auto (pick from free memory)", AUTO), *levels]


def merged(static: Form, model: Form) -> Props:
    """``static`` over the model's fields: the tab-wide limits win over one model's."""
    names = list(static) + [name for name in model if name not in static]
    empty = Field()
    return {name: model.get(name, empty).props() | static.get(name, empty).props() for name in names}


def models_field(cards: list[ModelCard], label: str = "Model") -> Field:
    return Field(choices=[(c.name, c.id) for c in cards], value=cards[0].id if cards else None, label=label)


def sampling(most_steps: int = 200) -> Form:
    return {
        "step_count": Field(minimum=1, maximum=most_steps, step=1, label="Steps"),
        "guidance_scale": Field(minimum=0, maximum=20, step=0.5, label="Guidance scale"),
        "flow_shift": Field(value=0, label="Flow shift (0 = the resolution's default)"),
        "seed_value": Field(value=-1, label="Seed (-1 = random)"),
        "negative_text": Field(label="Negative prompt"),
        "prompt_text": Field(label="Prompt"),
        "level": Field(
            choices=level_choices(),
            value=AUTO,
            label="Memory level",
            info="Higher levels use less GPU memory and run slower. Auto picks the lowest level that fits.",
        ),
        "window": Field(minimum=1, maximum=4, step=1, label="Window size", info=MAGI_HELP["window_size"]),
        "kv_budget": Field(value=0, minimum=0, label="KV budget (tokens)", info=MAGI_HELP["kv_budget"]),
    }


def t2v_inputs(cards: list[ModelCard], several_gpus: bool) -> Props:
    """The Text to video form: the frames slider's limit is any model's (the API's), its chunks too."""
    most = max(c.max_frames for c in cards)
    static = sampling() | {
        "model_id": models_field(cards),
        "resolution_label": Field(label="Resolution"),
        "frame_count": Field(minimum=1, maximum=most, step=4, label="Frames (4k+1)"),
        "chunks": Field(minimum=1, maximum=most // 24, step=1, label="Chunks (24 frames each)"),
        "chunk_speed": Field(
            choices=list(SPEEDS),
            value="Off",
            label="Speed (chunk cache)",
            info="Reuse chunk work between steps (FlowCache); faster, with some loss of detail.",
        ),
        "speed_preset": Field(
            choices=list(SPEEDS),
            value="Off",
            label="Speed",
            info="Reuse work between denoising steps. Fast ≈ 2x, Faster ≈ 3x, with some loss of detail.",
        ),
        "method": Field(
            choices=[(label, value) for value, label in METHOD_LABELS.items()],
            value="auto",
            label="Cache method",
            info=f"Step cache for {', '.join(c.name for c in cards if c.pipeline != 'Magi1')}.",
        ),
        "threshold": Field(
            keep_value=True,
            minimum=0,
            label="Threshold",
            info="Empty: from the Speed preset. Higher reuses more. TaylorSeer: refresh interval in steps.",
        ),
        "attention": Field(
            choices=[(ATTENTION_LABELS[name], name) for name in ATTENTION_CHOICES],
            value="auto",
            label="Attention",
            info="Unavailable choices fall back to auto; the video's metadata records what ran.",
        ),
        "compile_choice": Field(
            choices=["auto", "on", "off"],
            value="auto",
            label="Compile the model",
            info="auto = on for GPUs. The first run compiles (a minute or two), later runs reuse the cache.",
        ),
        "turbo": Field(value=False, label="Turbo (fp8)", info=TURBO_NOTE),
        "multi_gpu": Field(
            choices=GPU_CHOICES,
            value="auto",
            label="GPUs for this job",
            info="Auto: split a big job over idle GPUs, else one GPU. The decision and why are in the "
            "details.",
            visible=several_gpus,
        ),
        **few_step_fields(cards),
    }
    return merged(static, form_for("t2v", cards[0].id))


def i2v_inputs(cards: list[ModelCard], several_gpus: bool, static: Form) -> Props:
    """The Image to video form: Text to video's fields with ``static``, the images' fields."""
    base = t2v_inputs(cards, several_gpus)
    model = form_for("i2v", cards[0].id)  # over Text to video's properties, field by field (labels kept)
    names = [*base, *(name for name in model if name not in base)]
    fields = {name: Field(**(base.get(name, {}) | model.get(name, Field()).props())) for name in names}
    return merged(static, fields)


def continue_inputs(cards: list[ModelCard]) -> Props:
    """The Continue video form: the diffusion-forcing fields with the request's help texts."""
    first = cards[0]
    static = sampling() | {
        "model_id": models_field(cards),
        "clip_info": Field(value=describe_input(None, first, 0)),
        "seconds_to_add": Field(minimum=0.5, maximum=60, value=4, step=0.5, label="Seconds to add"),
        "keep": Field(value=True, label="Keep the clip before the new part (with its sound)"),
        "overlap_frames": Field(
            value=0, label="Overlap frames (0 = model default)", info=CONTINUE_HELP["overlap_history"]
        ),
        "ar": Field(value=0, label="AR step", info=CONTINUE_HELP["ar_step"]),
        "block_size": Field(value=0, label="Causal block size", info=CONTINUE_HELP["causal_block_size"]),
        "window_frames": Field(
            value=0, label="Window frames (0 = model default)", info=CONTINUE_HELP["base_num_frames"]
        ),
        "noise_level": Field(
            minimum=0,
            maximum=60,
            value=20,
            step=1,
            label="Condition noise",
            info=CONTINUE_HELP["addnoise_condition"],
        ),
        "speed_preset": Field(
            choices=list(SPEEDS),
            value="Off",
            label="Speed",
            info="Reuse chunks between denoising steps (FlowCache); faster, with some loss of detail.",
        ),
        "cache_threshold": Field(
            keep_value=True,
            minimum=0,
            label="FlowCache threshold",
            info="Empty: from the Speed preset. Higher reuses more chunks.",
        ),
    }
    return merged(static, form_for("continue", first.id))


def upscale_inputs(cards: list[ModelCard], several_gpus: bool) -> Props:
    """The Upscale form (no model installed: an empty dropdown and a note)."""
    static = {
        "model_id": models_field(cards),
        "about": Field(value=None if cards else "No upscaling model installed."),
        "scale_value": number_choices([2, 4], 4, label="Scale", info=UPSCALE_SCALE_INFO),
        "variant_value": Field(
            choices=[(VARIANT_LABELS[v], v) for v in VARIANTS], value=VARIANTS[0], label="Variant"
        ),
        "max_width_value": Field(
            value=0, label="Max input width (0 = keep)", info="Narrow the input first to cap the output size"
        ),
        "quality_value": Field(
            minimum=1,
            maximum=10,
            value=8,
            step=1,
            label="Quality (1 = small file, 10 = best)",
            info="NVENC's CQ when this GPU encodes H.264, else x264's CRF (35 .. 12)",
        ),
        "seed_value": Field(value=0, label="Seed (-1 = random)"),
        "fit_value": Field(
            choices=[("Pad (keep the whole picture)", "pad"), ("Crop (centre)", "crop")],
            value="pad",
            label="Fit to FlashVSR's 128-pixel multiple",
            info="Pad: the model sees a padded frame and the output keeps the scaled size exactly",
        ),
        "split_gpus": Field(
            value=False,
            label="Split the upscaler over 2 GPUs",
            info="Half of FlashVSR's blocks on a second GPU, for long 4K jobs that do not fit one",
        ),
        "interpolation": interpolation_field(),
    }
    model = form_for("upscale", cards[0].id, several_gpus) if cards else {}
    return merged(
        static,
        {"split_gpus": model.get("split_gpus", Field(visible=False)), "about": model.get("about", Field())},
    )


def interpolation_field() -> Field:
    """Frame interpolation at the end (doubles frames and fps)."""
    return Field(
        choices=list(INTERPOLATION_CHOICES),
        value="",
        label="Frame interpolation",
        info="A frame between every two: 16 -> 32 fps, same length, sound kept",
    )


def chain_inputs(t2v: list[ModelCard], extend: list[ModelCard], upscale: list[ModelCard]) -> Props:
    """The Long video form: the first model's presets, the continuation and upscale models."""
    first = t2v[0]
    static = {
        "model_id": models_field(t2v, "First clip model (text, or image with a start image)"),
        "prompt_text": Field(label="Prompt"),
        "resolution_label": Field(label="Resolution"),
        "frame_count": Field(
            minimum=1, maximum=max(c.max_frames for c in t2v), step=4, label="First clip frames"
        ),
        "step_count": Field(minimum=1, maximum=100, step=1, label="Steps"),
        "seed_value": Field(value=-1, label="Seed (-1 = random)"),
        "continue_id": Field(
            choices=[(c.name, c.id) for c in extend], value=extend[0].id, label="Continuation model"
        ),
        "continuation_count": Field(minimum=0, maximum=10, value=2, step=1, label="Continuations"),
        "seconds_each": Field(minimum=0.5, maximum=20, value=4, step=0.5, label="Seconds added by each"),
        "upscale_id": Field(
            choices=[("No upscale", "")] + [(c.name, c.id) for c in upscale],
            value="",
            label="Then upscale with",
        ),
        "factor": number_choices([2, 4], 4, label="Upscale factor"),
        "part_prompts": Field(
            value="",
            label="Prompt per part (optional)",
            info="One line per part: the first clip, then each continuation; a blank or missing line keeps "
            "the prompt of the part before",
        ),
        "part_seeds": Field(
            value="",
            label="Seed per part (optional)",
            info="Comma-separated, the first clip first; a blank or -1 derives the part's seed from "
            "the first",
        ),
        "interpolation": interpolation_field(),
        "start_image": Field(
            value=None,
            label="Start image (optional: image to video first, with a model that takes an image)",
        ),
    }
    return merged(static, form_for("long_video", first.id))
