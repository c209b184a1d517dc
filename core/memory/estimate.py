"""Peak GPU memory and host RAM for one text- or image-to-video run at one memory level, before it runs.

Weights come from the exact parameter counts and shapes on the model card (``arch``); the measured
figures the constants are fitted to are data in ``presets/memory_calibration.yaml``. Activations of one
DiT forward (batch 1: Wan runs its CFG branches one at a time) are
``tokens * dim * bytes * (c_base + c_ffn * ffn_dim / dim)``: the two constants are fitted to the measured
all-on-GPU peaks of Wan2.1 1.3B and 14B, so the model explains why the 1.3B, with its wide feed-forward,
needs more activation memory per token than the 14B. Token chunking (level 6) leaves
``c_chunk`` units per token held whole (block input, output, attention keys and values) plus
``c_slice`` units of one slice's feed-forward (``DEFAULT_CHUNK_TOKENS x ffn_dim x bytes``), both fitted
by least squares to the measured level-6 peaks; never more than unchunked. The VAE
decode peak is scaled by frame area from the measured 480p figures; an image-to-video run's encode of its
condition video (as many frames, before the denoising) stays below it. Wan2.1 image to video adds its CLIP
image encoder, which the levels place with the text encoder (GPU, then host RAM from level 2).

Host RAM: below level 4 diffusers loads every weight into RAM in the compute dtype first. From level 4
the low-RAM loader (``low_ram_load.py``) streams the DiT tensor by tensor into its final form (fp8 at
level 5: the params layerwise casting leaves wide stay in the compute dtype), so loading needs the
final footprint plus one tensor, and the text encoder is mapped from its files (page cache, reported
as ``mapped_gib`` but not counted as needed RAM). On a GPU from level 5 the fp8 DiT is mapped from its
cache file too (``fp8_cache.py``): it moves to ``mapped_gib``, and RAM keeps what group offload pins
while it copies the mapped blocks (``pinned_staging_gib``) and, while the cache file is written, one
converted tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core.memory.levels import (
    CHUNKING,
    DEFAULT_CHUNK_TOKENS,
    FP8_STORAGE,
    GROUP_OFFLOAD,
    TEXT_ENCODER_ON_CPU,
    VAE_TILING,
    check_level,
    expandable_segments_on,
)
from core.memory.low_ram_load import ARENA_CHUNK_BYTES, STAGING_BYTES
from core.memory.shape import ModelShape, card_shape
from core.validation import ConfigError, as_float
from weights.registry import ModelCard, get_card

ROOT = Path(__file__).resolve().parents[2]
CALIBRATION_PATH = ROOT / "presets" / "memory_calibration.yaml"
LOG_FOLDER = "docs/bench-logs/"
UNLOGGED = "unlogged:"
GIB = 2**30
BILLION = 1e9


@dataclass(frozen=True)
class Calibration:
    """The fitted constants and the data they came from."""

    shapes: dict[str, ModelShape]
    """The shapes of the measured models (by card id)."""
    offload: dict[str, float]
    """Group offload's ``prefetch_blocks`` and ``nonblock_fraction``, the same for every model."""
    c_base: float
    c_ffn: float
    c_chunk: float
    c_slice: float
    vae_gib_per_pixel: float
    vae_tiled_gib: float
    process_ram_gib: float
    safety: dict[bool, tuple[float, float]]
    """Margin (fraction, fixed GiB) with expandable segments on (True) and off (False)."""
    measured: tuple[dict[str, Any], ...]

    def with_margin(self, vram_gib: float) -> float:
        """The free VRAM a run estimated at ``vram_gib`` should have (fragmentation, the estimate's error)."""
        fraction, fixed = self.safety[expandable_segments_on()]
        return vram_gib * (1 + fraction) + fixed


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB figures for one run; ``vram_gib`` is 0 for the CPU."""

    level: int
    device_type: str
    vram_gib: float
    ram_gib: float
    gpu_weights_gib: float
    dit_working_gib: float
    activations_gib: float
    decode_gib: float
    host_weights_gib: float
    load_ram_gib: float
    tokens: int
    dit_gpu_weights_gib: float
    dit_host_weights_gib: float
    mapped_gib: float = 0.0
    """Weights mapped from files (page cache the kernel can drop and read again), not in ``ram_gib``."""

    @property
    def dit_peak_gib(self) -> float:
        """The DiT alone during one forward: its weights on the GPU plus its working set."""
        return self.dit_gpu_weights_gib + self.dit_working_gib


def _check_measured(measured: list[dict[str, Any]], where: str) -> None:
    """Every measured point names a known card and cites its log (a ``docs/bench-logs/`` file that
    exists, or ``unlogged: <where it was recorded>``)."""
    for point in measured:
        get_card(point.get("model", ""))
        log = point.get("log")
        if not isinstance(log, str) or not log.startswith((LOG_FOLDER, UNLOGGED)):
            raise ConfigError(f"{where}: {point['model']} {point['what']}: cite its log ({LOG_FOLDER}...)")
        if log.startswith(LOG_FOLDER) and not (ROOT / log).is_file():
            raise ConfigError(f"{where}: {point['model']} {point['what']}: no log file {log}")


def _output_gib(frames: int, height: int, width: int) -> float:
    """The decoded video as float32 RGB on the GPU."""
    return 3 * frames * height * width * 4 / GIB


def _chunked_units_gib(
    shape: ModelShape, tokens: int, compute_bytes: int, batch: int = 1
) -> tuple[float, float]:
    """Level 6's two activation units: what stays whole per token (``tokens x dim``) and one slice's
    feed-forward (``slice tokens x ffn_dim``); slices split the tokens of each sample."""
    held = batch * tokens * shape.dim * compute_bytes / GIB
    working = batch * min(tokens, DEFAULT_CHUNK_TOKENS) * shape.ffn_dim * compute_bytes / GIB
    return held, working


def _activations_gib(
    shape: ModelShape, cal: Calibration, level: int, tokens: int, compute_bytes: int
) -> float:
    """One forward's activations; token chunking never makes them larger than the whole block's."""
    whole = tokens * shape.dim * compute_bytes * (cal.c_base + cal.c_ffn * shape.ffn_dim / shape.dim) / GIB
    if level < CHUNKING:
        return whole
    held, working = _chunked_units_gib(shape, tokens, compute_bytes)
    return min(whole, cal.c_chunk * held + cal.c_slice * working)


def _offload_extras_gib(shape: ModelShape, per_expert_gib: float, level: int) -> float:
    """Group offload's weights on the GPU beside the activations: the running and prefetched blocks,
    the non-block layers and, with fp8 storage, one upcast feed-forward weight."""
    blocks = per_expert_gib * (1 - shape.nonblock_fraction) / shape.layers * shape.prefetch_blocks
    upcast = shape.dim * shape.ffn_dim * 2 / GIB if level >= FP8_STORAGE else 0.0
    return blocks + per_expert_gib * shape.nonblock_fraction + upcast


def _fit_chunking(measured: list[dict[str, Any]], shapes: dict[str, ModelShape]) -> tuple[float, float]:
    """``(c_chunk, c_slice)`` by least squares over the measured level-6 forwards (batch 1, fp8 offloaded
    weights): each peak less the offloaded weights = c_chunk * held unit + c_slice * slice unit."""
    rows = []
    for point in (p for p in measured if p["what"] == "dit_forward" and p["level"] == CHUNKING):
        shape = shapes[point["model"]]
        frames, height, width = point["latent"]
        tokens = frames * (height // shape.patch[1]) * (width // shape.patch[2])
        per_expert = dit_weights_gib(shape, FP8_STORAGE, 2) / shape.experts
        extras = _offload_extras_gib(shape, per_expert, FP8_STORAGE)
        held, working = _chunked_units_gib(shape, tokens, 2, point["batch"])
        rows.append((held, working, point["peak_gib"] - extras))
    sxx = sum(h * h for h, _, _ in rows)
    sxy = sum(h * w for h, w, _ in rows)
    syy = sum(w * w for _, w, _ in rows)
    det = sxx * syy - sxy * sxy
    if len(rows) < 2 or abs(det) < 1e-12 * sxx * syy:
        raise ConfigError("memory calibration: level 6 needs measured forwards of at least two token counts")
    bx = sum(h * p for h, _, p in rows)
    by = sum(w * p for _, w, p in rows)
    return (bx * syy - by * sxy) / det, (sxx * by - sxy * bx) / det


def dit_weights_gib(shape: ModelShape, level: int, compute_bytes: int) -> float:
    """All experts' DiT weights at ``level``: fp8 storage keeps ``wide_params`` in the compute dtype."""
    if level < FP8_STORAGE:
        return shape.dit_params * shape.experts * BILLION * compute_bytes / GIB
    narrow = shape.dit_params - shape.wide_params
    return (narrow + shape.wide_params * compute_bytes) * shape.experts * BILLION / GIB


def host_dit_gib(shape: ModelShape, level: int, compute_bytes: int, *, pinned: bool) -> float:
    """The DiT(s) in host RAM from level 4. Pinned (on a GPU) the loader carves them from whole 1 GiB
    buffers per expert (``PinnedArena``), so the footprint rounds up to whole buffers: measured on an
    H100, 1.3B 3.00 / 2.03 GiB and 14B 28.05 / 14.06 GiB at levels 4 / 5."""
    weights = dit_weights_gib(shape, level, compute_bytes)
    if not pinned:
        return weights
    chunk = ARENA_CHUNK_BYTES / GIB
    return shape.experts * math.ceil(weights / shape.experts / chunk) * chunk


def low_ram_load_gib(shape: ModelShape, level: int, compute_bytes: int, *, pinned: bool) -> float:
    """Host RAM the low-RAM loader adds for the DiT(s): the final weights plus its staging buffer (the
    largest bf16 tensor, the time projection dim x 6 dim or a feed-forward weight, at most 64 MiB)."""
    largest = max(shape.ffn_dim, 6 * shape.dim) * shape.dim * 2
    return host_dit_gib(shape, level, compute_bytes, pinned=pinned) + min(largest, STAGING_BYTES) / GIB


def _pow2(nbytes: float) -> int:
    return 1 << (int(nbytes) - 1).bit_length()


def pinned_staging_gib(shape: ModelShape) -> float:
    """Pinned host memory group offload holds for fp8 weights mapped from a file: it pins each group as
    it copies it (diffusers' ``low_cpu_mem_usage``), and torch's caching host allocator rounds every
    tensor up to a power of two and reuses the buffers. One block's eight attention and two feed-forward
    matrices, as measured: 0.50 GiB for the 14B at levels 5 and 6 (``bench/memory.py --fp8-map``, H100)."""
    block = 8 * _pow2(shape.dim**2) + 2 * _pow2(shape.dim * shape.ffn_dim)
    return block / GIB


def nonblock_host_gib(shape: ModelShape, compute_bytes: int) -> float:
    """Private RAM the layers outside the blocks take back after each offloaded forward: diffusers offloads
    that group without a stream (``.to("cpu")``), which copies instead of restoring the mapped views.
    They are about the wide params (condition embedder and time projection, in the compute dtype); the
    14B measured 0.48 GiB of RssAnon rise beside 0.50 GiB pinned (``bench/memory.py --fp8-map``)."""
    return shape.wide_params * shape.experts * BILLION * compute_bytes / GIB


def fp8_cache_write_gib(shape: ModelShape, compute_bytes: int) -> float:
    """Host RAM writing the fp8 cache file adds: the staging buffer and one converted tensor, the larger
    of a feed-forward matrix in fp8 and the time projection (dim x 6 dim) in the compute dtype."""
    largest = max(shape.dim * shape.ffn_dim, 6 * shape.dim**2 * compute_bytes)
    return (STAGING_BYTES + largest) / GIB


def _fit_activations(measured: list[dict[str, Any]], points: list[int], shapes: dict[str, ModelShape]):
    """Solve c_base + c_ffn * ffn/dim = activation units for the two chosen all-on-GPU measurements."""
    rows = []
    for index in points:
        point = measured[index]
        shape = shapes[point["model"]]
        frames, height, width = point["latent"]
        tokens = frames * (height // shape.patch[1]) * (width // shape.patch[2])
        weights = shape.dit_params * BILLION * 2 / GIB
        unit = tokens * shape.dim * 2 * point["batch"] / GIB
        rows.append((shape.ffn_dim / shape.dim, (point["peak_gib"] - weights) / unit))
    (x1, y1), (x2, y2) = rows
    if x1 == x2:
        raise ConfigError("memory calibration: the two fit points need models of different ffn_dim/dim")
    c_ffn = (y1 - y2) / (x1 - x2)
    return y1 - c_ffn * x1, c_ffn


def _fit_vae(measured: list[dict[str, Any]], stride: tuple[int, int, int]) -> tuple[float, float]:
    decode = {p["tiled"]: p for p in measured if p["what"] == "vae_decode"}
    frames, height, width = decode[False]["latent"]
    pixels = (height * stride[1], width * stride[2], (frames - 1) * stride[0] + 1)
    output = _output_gib(pixels[2], pixels[0], pixels[1])
    per_pixel = (decode[False]["peak_gib"] - output) / (pixels[0] * pixels[1])
    return per_pixel, decode[True]["peak_gib"] - output


@lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_PATH) -> Calibration:
    """Read the calibration YAML and fit the activation and VAE constants."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    measured, where = list(data["measured"]), Path(path).name
    _check_measured(measured, where)
    offload = {key: as_float(f"{where} offload {key}", v, low=0) for key, v in data["offload"].items()}
    shapes = {p["model"]: card_shape(get_card(p["model"]), offload) for p in measured}
    c_base, c_ffn = _fit_activations(measured, list(data["fit_points"]), shapes)
    c_chunk, c_slice = _fit_chunking(measured, shapes)
    vae_per_pixel, vae_tiled = _fit_vae(measured, shapes[measured[0]["model"]].vae_stride)
    return Calibration(
        shapes=shapes,
        offload=offload,
        c_base=c_base,
        c_ffn=c_ffn,
        c_chunk=c_chunk,
        c_slice=c_slice,
        vae_gib_per_pixel=vae_per_pixel,
        vae_tiled_gib=vae_tiled,
        process_ram_gib=float(data["process_ram_gib"]),
        safety={
            on: (float(data["safety"][key]["fraction"]), float(data["safety"][key]["fixed_gib"]))
            for on, key in ((True, "expandable"), (False, "fragmenting"))
        },
        measured=tuple(measured),
    )


def shape_for(card: ModelCard, cal: Calibration) -> ModelShape:
    """The estimate's shape of ``card``, from its arch facts (see :func:`card_shape`)."""
    return card_shape(card, cal.offload)


def estimate_memory(
    card: ModelCard,
    width: int,
    height: int,
    frames: int,
    level: int,
    device_type: str = "cuda",
    cal: Calibration | None = None,
    *,
    map_fp8: bool = True,
    decode_frames: int | None = None,
) -> MemoryEstimate:
    """Peak VRAM and needed RAM (GiB) for one run of ``card`` at ``level`` on a CUDA GPU or the CPU;
    ``map_fp8``: the fp8 DiT is mapped from its cache file (level 5+ on a GPU) rather than pinned in RAM;
    the app decides with :func:`core.memory.planner.maps_fp8_dit`. ``decode_frames``: the frames the VAE
    decodes in one go when that is not ``frames`` (a continuation denoises a window but decodes it all)."""
    cal = cal or load_calibration()
    shape = shape_for(card, cal)
    return estimate_for_shape(
        shape, width, height, frames, level, device_type, cal, map_fp8=map_fp8, decode_frames=decode_frames
    )


def estimate_for_shape(
    shape: ModelShape,
    width: int,
    height: int,
    frames: int,
    level: int,
    device_type: str = "cuda",
    cal: Calibration | None = None,
    *,
    map_fp8: bool = True,
    decode_frames: int | None = None,
) -> MemoryEstimate:
    """:func:`estimate_memory` for a model given by its shape."""
    level = check_level(level)
    cal = cal or load_calibration()
    tokens = shape.tokens(width, height, frames)
    on_gpu = device_type == "cuda"
    compute_bytes = 2 if on_gpu else 4
    dit_total = dit_weights_gib(shape, level, compute_bytes)
    text_encoder = shape.text_encoder_params * BILLION * compute_bytes / GIB
    image_encoder = shape.image_encoder_params * BILLION * compute_bytes / GIB
    vae = shape.vae_params * BILLION * 4 / GIB
    whole = vae + image_encoder  # loaded whole into RAM at every level (never mapped)
    activations = _activations_gib(shape, cal, level, tokens, compute_bytes)
    output = _output_gib(decode_frames or frames, height, width)
    untiled = cal.vae_gib_per_pixel * width * height
    decode = output + (min(untiled, cal.vae_tiled_gib) if level >= VAE_TILING else untiled)
    low_ram = level >= GROUP_OFFLOAD
    mapped_dit = map_fp8 and on_gpu and level >= FP8_STORAGE
    mapped = (text_encoder if low_ram else 0.0) + (dit_total if mapped_dit else 0.0)
    resident_encoder = 0.0 if low_ram else text_encoder
    if mapped_dit:
        load_ram = cal.process_ram_gib + fp8_cache_write_gib(shape, compute_bytes) + whole
    elif low_ram:
        load_ram = cal.process_ram_gib + low_ram_load_gib(shape, level, compute_bytes, pinned=on_gpu) + whole
    else:
        load_ram = cal.process_ram_gib + dit_weights_gib(shape, 0, compute_bytes) + text_encoder + whole
    if not on_gpu:
        steady = cal.process_ram_gib + dit_total + resident_encoder + whole + max(activations, decode)
        host = dit_total + resident_encoder + whole
        ram = max(load_ram, steady)
        return MemoryEstimate(
            level, device_type, 0.0, ram, 0.0, dit_total, activations, decode, host, load_ram, tokens,
            0.0, dit_total, mapped,
        )  # fmt: skip
    encoders_on_gpu = level < TEXT_ENCODER_ON_CPU  # the image encoder goes with the text encoder
    gpu_weights = vae + (text_encoder + image_encoder if encoders_on_gpu else 0.0)
    host_weights = 0.0 if encoders_on_gpu else resident_encoder + image_encoder
    dit_gpu, dit_host = (dit_total, 0.0) if level < GROUP_OFFLOAD else (0.0, dit_total)
    if level < GROUP_OFFLOAD:
        gpu_weights += dit_total
        dit_working = activations
    else:
        if mapped_dit:
            host_weights += pinned_staging_gib(shape) + nonblock_host_gib(shape, compute_bytes)
        else:
            host_weights += host_dit_gib(shape, level, compute_bytes, pinned=True)
        dit_working = activations + _offload_extras_gib(shape, dit_total / shape.experts, level)
    vram = gpu_weights + max(dit_working, decode)
    ram = max(load_ram, cal.process_ram_gib + host_weights)
    return MemoryEstimate(
        level, device_type, vram, ram, gpu_weights, dit_working, activations, decode, host_weights,
        load_ram, tokens, dit_gpu, dit_host, mapped,
    )  # fmt: skip
