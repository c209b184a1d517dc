"""The whole job, prompt to mp4 on disk, on one GPU: plain diffusers against our few-step path, in one run.

Random weights of the real shapes built on the GPU (Wan2.1 DiT of the size asked, UMT5-XXL text encoder,
Wan2.1 VAE), models loaded before the clock starts (a warm-up job runs first, compiling included), 81
frames at 832x480 unless asked otherwise. Rows:

- ``plain-50``: diffusers' ``WanPipeline`` at 50 steps with CFG (UniPC, the base model's shift), the VAE in
  float32 as its examples load it; frames written by the same PyAV writer as ours;
- ``plain-few``: the same pipeline at the card's few-step settings (steps, CFG 1, Euler at its shift) and,
  for 14B, lightx2v's rank-64 step-distill LoRA loaded by ``pipe.load_lora_weights`` (random weights in
  lightx2v's key format);
- ``ours-few``: the app's runner (``core.runner.Runner``) on the card with ``few_step`` on, default speed
  options (lossless); the step-distill LoRA (same random file) merged into the DiT as the preset asks;
- ``ours-adapter``: the same with the LoRA left an adapter (``fuse: false``), what it costs per step;
- ``ours-turbo``: ``ours-few`` with Turbo.

``--decode-chunk N`` sets the fast decode's most latent frames per call for the ``ours`` rows
(``core.speed.vae_decode.MAX_CHUNK``); ``--conv-kernel pointer|tma|''`` its convolution kernel on this GPU
(``core.speed.vae_decode.CONV_KERNELS``; '' for cuDNN).

Per row: seconds per stage (text, denoise, decode, write; ``other`` is the rest: postprocess, scheduler,
record) and the whole job. Stages come from the job's record when it has them, else from timers wrapped
around ``encode_prompt`` and ``vae.decode``.

    python3 bench/e2e_speed.py --model 1.3b --json $OUT/e2e_1.3b.json
    python3 bench/e2e_speed.py --model 14b --rows plain-few,ours-few,ours-turbo --size 832x480
    python3 bench/e2e_speed.py --model tiny --size 64x48 --frames 9 --rows plain-few,ours-few  # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.random_wan import default_dtype, random_transformer  # noqa: E402
from bench.wan_shapes import WAN_COMMON, wan_config  # noqa: E402
from core import device_models  # noqa: E402
from core.hardware import compute_dtype  # noqa: E402
from core.jobs import Job  # noqa: E402
from core.kernels.causal_conv3d import METHODS  # noqa: E402
from core.lora import parse_loras  # noqa: E402
from core.runner import Runner  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.speed import vae_decode  # noqa: E402
from core.tasks.t2v import T2VRequest  # noqa: E402
from core.tiny.wan import load_tokenizer, umt5_text_encoder  # noqa: E402
from core.video_io import write_video  # noqa: E402
from weights.few_step import FewStepLora  # noqa: E402
from weights.registry import get_card  # noqa: E402

DEVICE = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
PROMPT = "a red fox trotting through fresh snow at dawn, cinematic, shallow depth of field"
UMT5_XXL = {"d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "vocab_size": 256384}
"""``text_encoder/config.json`` of the Wan2.1 Diffusers repos (google/umt5-xxl's encoder)."""


@dataclass(frozen=True)
class Setup:
    """One model size: its few-step card, the DiT shape, the full-run defaults and the LoRA rank."""

    card: str
    dit: str
    full_shift: float
    lora_rank: int = 0


SETUPS = {
    "1.3b": Setup("fastwan2.1-t2v-1.3b", "1.3b", 3.0),
    "14b": Setup("wan2.1-t2v-14b", "14b", 5.0, lora_rank=64),
    "tiny": Setup("fastwan2.1-t2v-1.3b", "tiny", 3.0, lora_rank=4),
}
ROWS = ("plain-50", "plain-few", "ours-few", "ours-turbo")
"""The default rows (``ours-adapter`` on request)."""
TINY_DIT = {"num_attention_heads": 2, "ffn_dim": 64, "num_layers": 2}


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


class StageClock:
    """Seconds spent in ``encode_prompt`` and ``vae.decode`` of the pipelines it wraps, per run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, pipe: Any) -> Any:
        pipe.encode_prompt = self._timed("text", pipe.encode_prompt)
        pipe.vae.decode = self._timed("decode", pipe.vae.decode)
        return pipe

    def _timed(self, stage: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                self.seconds[stage] += time.perf_counter() - start

        return timed

    @contextmanager
    def run(self):
        self.seconds.clear()
        yield self.seconds


@cache
def text_encoder(tiny: bool) -> Any:
    """UMT5-XXL's encoder with random weights on the GPU in the compute dtype, built once."""
    dtype = compute_dtype(DEVICE)
    shape = {"d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4} if tiny else UMT5_XXL
    torch.manual_seed(0)
    with torch.device(DEVICE), default_dtype(dtype):
        return umt5_text_encoder(4096, **shape).eval().requires_grad_(False)


def build_pipeline(setup: Setup, folder: Path, scheduler: Any, clock: StageClock) -> Any:
    """A ``WanPipeline`` of random weights: a fresh DiT, the shared text encoder, a float32 VAE."""
    from diffusers import AutoencoderKLWan, WanPipeline

    config = {**WAN_COMMON, **TINY_DIT} if setup.dit == "tiny" else wan_config(setup.dit)
    transformer = random_transformer(config, DEVICE, compute_dtype(DEVICE))
    torch.manual_seed(1)
    with torch.device(DEVICE):
        vae = AutoencoderKLWan()
    pipe = WanPipeline(
        tokenizer=load_tokenizer(folder / "tokenizer"),
        text_encoder=text_encoder(setup.dit == "tiny"),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return clock.wrap(pipe)


def random_lora(setup: Setup, folder: Path, name: str = "random_step_distill.safetensors") -> Path | None:
    """lightx2v-format LoRA of the setup's rank on every block's attention and FFN (random, bf16)."""
    if not setup.lora_rank:
        return None
    from tests.lora_files import tiny_lora, write_lora

    config = {**WAN_COMMON, **TINY_DIT} if setup.dit == "tiny" else wan_config(setup.dit)
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    state = tiny_lora(
        "lightx2v", dim=dim, ffn=config["ffn_dim"], layers=config["num_layers"], rank=setup.lora_rank
    )
    return write_lora(folder, name, {k: v.bfloat16() for k, v in state.items()})


def plain_job(
    pipe: Any, out: Path, steps: int, guidance: float, size: tuple[int, int, int], fps: int
) -> tuple[float, float]:
    """Seconds from the prompt to the mp4 on disk through ``pipe`` (plain diffusers), and of the write."""
    width, height, frames = size
    sync()
    start = time.perf_counter()
    video = pipe(
        prompt=PROMPT,
        negative_prompt="blurry, low quality",
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).frames[0]
    sync()
    written = time.perf_counter()
    write_video(out, video, fps)
    return time.perf_counter() - start, time.perf_counter() - written


def plain_row(name: str, setup: Setup, folder: Path, size: tuple[int, int, int], clock: StageClock) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    card = get_card(setup.card)
    few = card.few_step
    if name == "plain-50":
        scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            num_train_timesteps=1000,
            flow_shift=setup.full_shift,
        )
        steps, guidance = 50, 5.0
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=few.flow_shift)
        steps, guidance = few.steps, few.guidance
    pipe = build_pipeline(setup, folder, scheduler, clock)
    lora = random_lora(setup, folder / "loras") if name == "plain-few" else None
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    plain_job(pipe, folder / "warmup.mp4", 1, guidance, size, card.fps)
    with clock.run() as stages:
        seconds, write = plain_job(pipe, folder / f"{name}.mp4", steps, guidance, size, card.fps)
        stages = {**stages, "write": write}
    del pipe
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
    return row(name, seconds, stages, steps, guidance, torch_peak())


@contextmanager
def preset_loras_unfused(on: bool) -> Iterator[None]:
    """``ours-adapter``: the preset's step-distill LoRA entries ask for an adapter instead of a merge."""
    if not on:
        yield
        return
    fused = FewStepLora.entry
    with mock.patch.object(FewStepLora, "entry", lambda self: fused(self) | {"fuse": False}):
        yield


def ours_row(name: str, setup: Setup, folder: Path, size: tuple[int, int, int], clock: StageClock) -> dict:
    from diffusers import UniPCMultistepScheduler

    settings = Settings(
        outputs_dir=folder / "outputs", models_dir=folder / "models", loras_dir=folder / "loras", offline=True
    )
    card = get_card(setup.card)
    preset = card.few_step.loras if setup.lora_rank else ()
    for entry in preset:  # where the preset's download would put it: found there, nothing is fetched
        random_lora(setup, settings.loras_dir, parse_loras([entry.entry()])[0].file_name)

    def loader(card: Any, model_folder: Path, device: torch.device, level: int) -> Any:
        from core.memory.apply import apply_memory_level

        scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
        )
        pipe = build_pipeline(setup, folder, scheduler, clock)
        apply_memory_level(pipe, level, device)
        return pipe

    device_models.ensure_model = lambda card, settings, **_: folder
    runner = Runner(settings, DEVICE)
    runner.models = device_models.DeviceModels(DEVICE, settings, loader=loader)
    speed = {"turbo": True} if name == "ours-turbo" else None
    width, height, frames = size

    def request(seed: int) -> T2VRequest:
        return T2VRequest(
            model=setup.card,
            prompt=PROMPT,
            width=width,
            height=height,
            frames=frames,
            seed=seed,
            few_step=True,
            speed=speed,
        )

    with preset_loras_unfused(name == "ours-adapter"):
        runner.execute(Job(request(1)))  # loads, compiles, warms the caches
        with clock.run() as timers:
            sync()
            start = time.perf_counter()
            timed = request(2)
            record = runner.execute(Job(timed))
            seconds = time.perf_counter() - start
            stages = dict(record.get("stages") or timers)
    runner.models.unload()
    keys = ("speed", "decode", "cache", "memory_level", "memory_plan", "loras")
    applied = {key: record.get(key) for key in keys}
    return row(name, seconds, stages, timed.steps, timed.guidance, torch_peak()) | {"record": applied}


def torch_peak() -> float:
    if DEVICE.type != "cuda":
        return 0.0
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 1)


def row(
    name: str, seconds: float, stages: dict[str, float], steps: int, guidance: float, peak: float
) -> dict:
    known = {stage: round(stages.get(stage, 0.0), 3) for stage in ("text", "decode", "write")}
    if "denoise" in stages:
        known["denoise"] = round(stages["denoise"], 3)
    else:
        known["denoise"] = round(seconds - sum(known.values()), 3)
    known["other"] = round(seconds - sum(known.values()), 3)
    result = {
        "row": name,
        "seconds": round(seconds, 2),
        "steps": steps,
        "guidance": guidance,
        "peak_gib": peak,
    }
    print(
        f"{name:11s} {seconds:8.2f} s  ({steps} steps, CFG {guidance})  "
        + "  ".join(f"{k} {v:.2f}" for k, v in known.items())
        + f"  peak {peak} GiB",
        flush=True,
    )
    return {**result, "stages": known}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SETUPS), default="1.3b")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--json", default="")
    parser.add_argument("--decode-chunk", type=int, default=vae_decode.MAX_CHUNK)
    parser.add_argument("--conv-kernel", choices=["", *METHODS], default=None, help="'' for cuDNN")
    args = parser.parse_args()
    vae_decode.MAX_CHUNK = args.decode_chunk
    if args.conv_kernel is not None:
        vae_decode.CONV_KERNELS[torch.cuda.get_device_name()] = args.conv_kernel
    setup = SETUPS[args.model]
    width, height = (int(v) for v in args.size.split("x"))
    size = (width, height, args.frames)
    clock = StageClock()
    gpu = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU"
    decode = {"max_chunk": args.decode_chunk, "conv_kernel": args.conv_kernel}
    info = {"gpu": gpu, "torch": torch.__version__, "model": args.model, "size": size, "decode": decode}
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.rows.split(","):
            build = plain_row if name.startswith("plain") else ours_row
            results.append(build(name, setup, folder, size, clock))
            if args.json:  # after every row: a run cut short by a time limit keeps the rows it finished
                Path(args.json).write_text(json.dumps(info | {"rows": results}, indent=1))
    base = {r["row"]: r["seconds"] for r in results}
    for reference in ("plain-50", "plain-few"):
        if reference in base:
            ratios = ", ".join(f"{r['row']} {base[reference] / r['seconds']:.1f}x" for r in results)
            print(f"speed-up against {reference}: {ratios}")


if __name__ == "__main__":
    main()
