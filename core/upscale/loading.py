"""Load a FlashVSR v1.1 weights folder (official file names and key layout) into our modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from core.upscale.config import (
    DIT_FILE,
    LQ_PROJ_FILE,
    PROMPT_FILE,
    TC_DECODER_FILE,
    VAE_FILE,
    VARIANTS,
    FlashVSRConfig,
    read_config,
)
from core.upscale.dit import StreamingWanDiT
from core.upscale.full_vae import StreamingVAEDecoder, build_vae, convert_original_vae
from core.upscale.lq_projection import CausalLQProjection
from core.upscale.tc_decoder import TinyConditionalDecoder, deepening_keys
from core.validation import ConfigError, as_choice


def required_files(variant: str) -> tuple[str, ...]:
    """The files a variant needs in its folder."""
    decoder = VAE_FILE if variant == "full" else TC_DECODER_FILE
    return (DIT_FILE, LQ_PROJ_FILE, decoder, PROMPT_FILE)


def missing_files(folder: Path, variant: str) -> list[str]:
    return [name for name in required_files(variant) if not (Path(folder) / name).is_file()]


@dataclass
class FlashVSRModel:
    """The loaded parts: DiT, LQ projection, the prompt embedding and one decoder for the variant."""

    variant: str
    config: FlashVSRConfig
    dit: StreamingWanDiT
    lq_projection: CausalLQProjection
    context: torch.Tensor
    tc_decoder: TinyConditionalDecoder | None = None
    vae_decoder: StreamingVAEDecoder | None = None

    @property
    def device(self) -> torch.device:
        return self.dit.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.patch_embedding.weight.dtype


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch pickle of tensors (loaded with ``weights_only``)."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def load_strict(
    module: nn.Module, state: dict[str, torch.Tensor], name: str, may_miss: set[str] = frozenset()
) -> None:
    """Load ``state`` into ``module`` (built on the meta device), failing clearly on any difference."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state) - set(may_miss))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else "",
                f"wrong shape {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in wrong[:3]]}"
                if wrong
                else "",
            )
            if part
        )
        raise ConfigError(f"{name} does not match the FlashVSR v1.1 layout: {details}")
    module.load_state_dict(state, strict=False, assign=True)


def load_flashvsr(folder: Path, variant: str, device: torch.device, dtype: torch.dtype) -> FlashVSRModel:
    """Build every part of ``variant`` from ``folder`` and move it to ``device`` in ``dtype``."""
    as_choice("variant", variant, VARIANTS)
    folder = Path(folder)
    missing = missing_files(folder, variant)
    if missing:
        raise ConfigError(f"{folder} lacks FlashVSR file(s) {', '.join(missing)}")
    config = read_config(folder)
    with torch.device("meta"):
        dit = StreamingWanDiT(config.dit)
        lq_projection = CausalLQProjection(config.lq_projection)
    load_strict(dit, load_state(folder / DIT_FILE), DIT_FILE)
    load_strict(lq_projection, load_state(folder / LQ_PROJ_FILE), LQ_PROJ_FILE)
    context = torch.load(folder / PROMPT_FILE, map_location="cpu", weights_only=True)
    if isinstance(context, dict):
        context = context.get("context", next(iter(context.values())))
    model = FlashVSRModel(
        variant, config, dit.to(device, dtype).eval(), lq_projection.to(device, dtype).eval(), context
    )
    if variant == "full":
        vae = build_vae(config.vae)
        vae.load_state_dict(convert_original_vae(load_state(folder / VAE_FILE)), strict=True)
        model.vae_decoder = StreamingVAEDecoder(vae.to(device, dtype).eval())
    else:
        decoder = TinyConditionalDecoder(config.tc_decoder)
        state = {
            k.removeprefix("decoder."): v
            for k, v in load_state(folder / TC_DECODER_FILE).items()
            if k.startswith("decoder.")
        }
        load_strict(decoder.decoder, state, TC_DECODER_FILE, may_miss=deepening_keys(decoder.decoder))
        model.tc_decoder = decoder.to(device, dtype).eval()
    model.dit.prepare(context)
    return model
