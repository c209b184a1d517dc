"""Wan2.1 T2V pipelines with random weights for the multi-GPU benches, built straight on the device.

Nothing is written to or read from disk: both the plain path and every rank or worker process build the same
seeded weights. :func:`use_random_weights` makes the runner, the split ranks and the GPU workers load them
instead of a checkpoint and keep a subsample of every video's frames for the comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

_last_latents: list[np.ndarray] = []
"""The latents this process's VAE decoded last (what the DiT made), kept for the equality check."""

TINY_DIT = {"num_attention_heads": 2, "ffn_dim": 64, "num_layers": 2}
"""A two-block DiT of the same class for CPU smoke runs of the benches (``--dit tiny``)."""


def dit_size(card: Any) -> str:
    """``14b`` or ``1.3b``: the Wan2.1 DiT shape of ``card``."""
    return "14b" if "14b" in card.id else "1.3b"


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Create parameters in ``dtype`` (a 14B DiT built in float32 first would need twice its memory)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def random_transformer(config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """``WanTransformer3DModel(**config)`` with weights drawn from seed 0 straight on ``device`` in
    ``dtype``; like ``from_pretrained``, the modules in ``_keep_in_fp32_modules`` (time embedder, norms,
    modulation tables) are kept in float32."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        transformer = WanTransformer3DModel(**config)
    keep = transformer._keep_in_fp32_modules
    for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
        if any(part in keep for part in name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()
    return transformer.eval().requires_grad_(False)


def random_pipeline(
    card: Any,
    folder: Path,
    device: torch.device,
    level: int = 0,
    dit: str = "",
    without: tuple[str, ...] = (),
    **_: Any,
) -> Any:
    """The Wan2.1 T2V pipeline of ``card`` with random weights: the real transformer (``dit`` overrides
    its size: ``1.3b``, ``14b`` or ``tiny``) and VAE configs, a tiny 4096-wide text encoder (the prompt's
    content does not matter for timing; none when ``without`` names it, as on split ranks past 0), at
    memory ``level``."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    from bench.wan_shapes import WAN_COMMON, wan_config
    from core.hardware import compute_dtype
    from core.memory.apply import apply_memory_level
    from core.tiny.wan import load_tokenizer, umt5_text_encoder

    dit = dit or dit_size(card)
    config = {**WAN_COMMON, **TINY_DIT} if dit == "tiny" else wan_config(dit)
    dtype = compute_dtype(device)
    transformer = random_transformer(config, device, dtype)
    text_encoder = None
    torch.manual_seed(1)  # the same VAE on a rank that skips the text encoder
    if "text_encoder" not in without:
        with torch.device(device), default_dtype(dtype):
            text_encoder = umt5_text_encoder(4096, d_kv=64, d_ff=256, num_layers=1).eval()
    vae = random_vae(device)
    keep_latents_on_decode(vae)
    pipe = WanPipeline(
        tokenizer=load_tokenizer(Path(folder) / "tokenizer"),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
        ),
    )
    pipe.set_progress_bar_config(disable=True)
    apply_memory_level(pipe, level, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return pipe


def random_vae(device: torch.device) -> Any:
    """The Wan2.1 VAE with weights drawn from seed 2 on ``device`` (eval mode: built in training mode, its
    dropout would make two runs differ)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(2)
    with torch.device(device):
        return AutoencoderKLWan().eval()


def whole_frames(latents: np.ndarray, device: torch.device) -> np.ndarray:
    """Saved latents decoded whole in float32 by :func:`random_vae`, as the pipeline decodes them, and
    subsampled as :func:`write_video_keeping_frames` keeps frames: the one-GPU reference for the frames."""
    with torch.no_grad():
        video = random_vae(device).decode(torch.from_numpy(latents).to(device)).sample
    frames = (video[0].permute(1, 2, 3, 0).float() * 0.5 + 0.5).clamp(0, 1).cpu().numpy()
    return np.ascontiguousarray(frames[::8, ::4, ::4])


def decode_to_video_keeping_latents(
    job: Any, outputs_dir: Path, request: Any, vae: Any, latents: Any, *args: Any
) -> Any:
    """The single-GPU run's streamed decode, keeping the latents beside its video (as the VAE takes them)."""
    from core.speed.vae_decode import denormalize
    from core.tasks import wan_output

    decoded = wan_output.decode_to_video(job, outputs_dir, request, vae, latents, *args)
    kept = denormalize(vae, latents).float().cpu().numpy()
    np.save(Path(decoded.path).with_suffix(".latents.npy"), kept)
    return decoded


def keep_latents_on_decode(vae: Any) -> None:
    """Make ``vae.decode`` keep a float32 copy of the latents it is given in :data:`_last_latents` (after
    decoding: a keeper outside a split decode then has the last word over the bands' keepers)."""
    decode = vae.decode

    def decode_keeping_latents(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        output = decode(latents, *args, **kwargs)
        _last_latents[:] = [latents.float().cpu().numpy()]
        return output

    vae.decode = decode_keeping_latents


@contextmanager
def split_decode_keeping_latents(pipe: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The split ranks' :func:`core.parallel.split_decode.split_decode` with :func:`keep_latents_on_decode`
    outside it, so the whole latents are kept, not a rank's band."""
    from core.parallel.job_patch import patched
    from core.parallel.split_decode import split_decode

    with split_decode(pipe, *args, **kwargs) as done, patched(pipe.vae, "decode", pipe.vae.decode):
        keep_latents_on_decode(pipe.vae)
        yield done


def use_random_weights(folder: Path, dit: str = "") -> None:
    """This process's runner, split ranks and GPU workers skip the weights store and build
    :func:`random_pipeline` instead of loading; every video also saves a frame subsample as ``.npy``."""
    from core import device_models
    from core.parallel import split, split_rank
    from core.tasks import t2v, wan_output

    def local_folder(card: Any, settings: Any, **kwargs: Any) -> Path:
        return folder

    device_models.ensure_model = split.ensure_model = split_rank.ensure_model = local_folder
    split_rank.load_diffusers_pipeline = partial(random_pipeline, dit=dit)
    split_rank.split_decode = split_decode_keeping_latents
    wan_output.write_video = write_video_keeping_frames
    t2v.decode_to_video = decode_to_video_keeping_latents


def random_runner(settings: Any, device: torch.device, folder: Path, dit: str = "") -> Any:
    """A :class:`core.runner.Runner` on ``device`` that generates with :func:`random_pipeline`."""
    from core.device_models import DeviceModels
    from core.runner import Runner

    use_random_weights(folder, dit)
    runner = Runner(settings, device)
    runner.models = DeviceModels(device, settings, loader=partial(random_pipeline, dit=dit))
    return runner


def random_worker_executor(folder: Path, dit: str, settings: Any, gpu: int | None) -> Any:
    """The GPU worker's executor (a :data:`core.parallel.worker.ExecutorFactory` once ``folder`` and ``dit``
    are bound): :func:`random_runner` on the worker's one visible GPU."""
    device = torch.device("cuda", 0) if gpu is not None else torch.device("cpu")
    return random_runner(settings, device, folder, dit).execute


def write_video_keeping_frames(path: Path, frames: Any, fps: int, metadata: Any = None) -> Any:
    """``write_video`` that also saves every 8th frame at a quarter of the size, and the latents decoded
    last, for the equality check."""
    from core.video_io import write_video

    written = write_video(path, frames, fps, metadata)
    np.save(Path(path).with_suffix(".npy"), np.ascontiguousarray(frames[::8, ::4, ::4]))
    if _last_latents:
        np.save(Path(path).with_suffix(".latents.npy"), _last_latents[0])
    return written


def saved_frames(record: dict[str, Any]) -> np.ndarray:
    """The frame subsample :func:`write_video_keeping_frames` kept beside the video of ``record``."""
    return np.load(Path(record["path"]).with_suffix(".npy"))


def saved_latents(record: dict[str, Any]) -> np.ndarray:
    """The latents :func:`write_video_keeping_frames` kept beside the video of ``record``."""
    return np.load(Path(record["path"]).with_suffix(".latents.npy"))
