"""Load a published MAGI-1 DiT checkpoint straight to the target device and dtype.

Layout (Hub ``sand-ai/MAGI-1``, ``ckpt/magi/<variant>/``): the weights sit in ``inference_weight``,
``inference_weight.distill``, ``inference_weight.fp8.distill`` (what the official loader picks from the
``distill`` / ``fp8_quant`` flags) as ``model.safetensors`` or shards listed by
``model.safetensors.index.json``. The architecture comes from a config json (the published
``<variant>_config.json``, or our ``config.json`` next to the weights) or a :func:`~core.magi.config.preset`.

The model is built on the meta device and every tensor is read from safetensors directly onto ``device``,
cast to ``dtype`` (the embedders, final linear, rope, QK norms and post norms stay float32, as published),
and assigned: no full-size float32 copy in host memory. Keys and shapes must match exactly.

fp8 checkpoints (``4.5B_distill_quant``) store the inner layers' q/qx/k/v, ``linear_fc1`` (per-tensor) and
``linear_proj`` / ``linear_fc2`` (per-channel, with a smoothing scale) as ``float8_e4m3fn`` ``[1, out, in]``
with scales; they are folded back into plain weights in ``dtype``
(``w * weight_scale * input_scale / smooth``), so the model runs on any GPU, without fp8 speed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from core.magi.config import MagiDiTConfig, weight_subdir
from core.magi.dit import MagiDiT, keeps_float32
from core.magi.rope import default_bands
from core.validation import ConfigError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CONFIG = "config.json"
QUANT_SCALES = ("weight_scale", "input_scale", "smooth_scale")


def find_weights(folder: Path, config: MagiDiTConfig) -> Path:
    """The folder holding the safetensors: ``folder`` itself or its ``inference_weight*`` subfolder."""
    folder = Path(folder)
    for candidate in (folder / weight_subdir(config), folder):
        if (candidate / INDEX).is_file() or (candidate / SINGLE).is_file():
            return candidate
    raise ConfigError(f"no MAGI-1 DiT weights ({INDEX} or {SINGLE}) in {folder} or {weight_subdir(config)}/")


def find_config(folder: Path) -> MagiDiTConfig:
    """The config json in ``folder`` (``config.json`` or a published ``*_config.json``)."""
    folder = Path(folder)
    candidates = [folder / CONFIG, *sorted(folder.glob("*_config.json"))]
    for path in candidates:
        if path.is_file():
            return MagiDiTConfig.from_json(path)
    raise ConfigError(f"no MAGI-1 config json in {folder}")


def shard_map(weights: Path) -> dict[str, Path]:
    """Tensor name -> shard file."""
    index = weights / INDEX
    if index.is_file():
        try:
            mapping = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"bad safetensors index {index}: {error}") from error
        return {name: weights / shard for name, shard in mapping.items()}
    single = weights / SINGLE
    with safe_open(str(single), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


def _read(files: dict[str, Path], device: torch.device) -> Iterator[tuple[str, torch.Tensor]]:
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            for name in names:
                yield name, handle.get_tensor(name)


def dequantize(weight: torch.Tensor, scales: dict[str, torch.Tensor]) -> torch.Tensor:
    """Fold an fp8 ``[1, out, in]`` weight and its scales into a float32 ``[out, in]`` weight."""
    w = weight.reshape(weight.shape[-2:]).float() * scales["weight_scale"].float().reshape(-1)[0]
    input_scale = scales["input_scale"].float().reshape(-1)
    if "smooth_scale" in scales:
        return w * input_scale[0] / scales["smooth_scale"].float().reshape(1, -1)
    return w * input_scale[0] / input_scale.reshape(1, -1)


def load_state(files: dict[str, Path], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor on ``device`` in its target dtype, fp8 weights folded back."""
    raw: dict[str, torch.Tensor] = {}
    scales: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in _read(files, device):
        owner, _, leaf = name.rpartition(".")
        if leaf in QUANT_SCALES:
            scales.setdefault(owner, {})[leaf] = tensor
        else:
            raw[name] = tensor
    state = {}
    for name, tensor in raw.items():
        owner = name.rpartition(".")[0]
        if tensor.dtype == torch.float8_e4m3fn:
            if owner not in scales:
                raise ConfigError(f"fp8 weight {name} has no scales in the checkpoint")
            tensor = dequantize(tensor, scales.pop(owner))
        state[name] = tensor.to(torch.float32 if keeps_float32(name) else dtype)
    if scales:
        raise ConfigError(f"quantization scales without fp8 weights: {', '.join(sorted(scales))}")
    return state


def check_keys(model: MagiDiT, state: dict[str, torch.Tensor]) -> None:
    """Refuse missing / unexpected tensors and shape mismatches, naming them."""
    expected = {name: tuple(p.shape) for name, p in model.state_dict(keep_vars=True).items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(n for n in set(expected) & set(state) if tuple(state[n].shape) != expected[n])
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:8])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:8])}")
    if wrong:
        problems.append(
            "wrong shape: " + ", ".join(f"{n} {tuple(state[n].shape)} != {expected[n]}" for n in wrong[:8])
        )
    if problems:
        raise ConfigError("MAGI-1 DiT checkpoint does not match the config; " + "; ".join(problems))


def load_magi_dit(
    folder: Path,
    *,
    config: MagiDiTConfig | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> MagiDiT:
    """Build a :class:`MagiDiT` from ``folder`` (variant folder or its weight folder), ready for inference."""
    folder = Path(folder)
    config = config or find_config(folder)
    device = torch.device(device)
    files = shard_map(find_weights(folder, config))
    state = load_state(files, device, dtype)
    state.setdefault("rope.bands", default_bands(config.rope_dim).to(device))
    with torch.device("meta"):
        model = MagiDiT(config)
    check_keys(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)
