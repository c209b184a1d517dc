"""Image to video over 2 CPU processes (gloo): the split gives the single-process frames for the I2V, FLF2V
and TI2V tiny models (CFG parallel exactly, Ulysses within float noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.device_models import Loader
from core.jobs import Job
from core.parallel.split import SplitGroup
from core.pipelines import load_diffusers_pipeline
from core.runner import Runner
from core.settings import Settings
from core.tasks import parse_request, task_for, wan_output
from core.tasks.t2v import pipeline_loader
from core.video_io import probe_video, read_record
from tests.conftest_parallel import _write_video_and_frames

pytest_plugins = ["tests.conftest_parallel"]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pictures")
    start, end = folder / "start.png", folder / "end.png"
    gradient = np.linspace(0, 255, 120 * 80 * 3).reshape(80, 120, 3).astype(np.uint8)
    Image.fromarray(gradient).save(start)
    Image.new("RGB", (120, 80), (20, 20, 220)).save(end)
    return {"image": str(start), "end_image": str(end)}


def request_data(model: str, pictures: dict[str, str]) -> dict:
    data = {"task": "i2v", "model": model, "prompt": "a cat", "seed": 7, "image": pictures["image"]}
    return data | ({"end_image": pictures["end_image"]} if model == "tiny-wan-flf2v" else {})


def single_process(settings: Settings, data: dict, loader: Loader | None = None) -> tuple[dict, np.ndarray]:
    """``data`` through the plain single-process Runner (its record; its models loaded by ``loader`` when
    given), and the raw frames the same pipeline makes for it (the runner streams its decode into the mp4;
    the ranks keep raw frames), on one thread as the ranks run (the image's VAE encode sums in thread
    order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner = Runner(settings, torch.device("cpu"))
        runner.models.loader = loader
        record = runner.execute(Job(parse_request(data)))
        request = parse_request(data)
        work = task_for(request).work(runner, Job(request), request, None)
        opened_as = pipeline_loader(work.pipeline)
        pipe = runner.models.get(request.card, settings.models_dir / request.card.id, 0, None, opened_as)
        return record, work.generate(pipe, request)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("model", "modes", "tolerance"),
    [
        ("tiny-wan-i2v", ("cfg",), 0.0),
        ("tiny-wan-flf2v", ("cfg",), 0.0),
        ("tiny-wan-ti2v", ("cfg",), 0.0),
        ("tiny-wan-i2v", ("ulysses",), 1e-5),
        ("tiny-wan-ti2v", ("ulysses",), 1e-5),
        ("tiny-wan-flf2v", ("ring",), 1e-3),
    ],
)
def test_image_to_video_split_matches_single_process(
    split_group: SplitGroup,
    parallel_settings: Settings,
    pictures: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    modes: tuple[str, ...],
    tolerance: float,
) -> None:
    monkeypatch.setattr(wan_output, "write_video", _write_video_and_frames)
    data = request_data(model, pictures)
    reference, expected = single_process(parallel_settings, data)
    job = Job(parse_request(data))
    record = split_group.run(job, job.request, modes)
    assert record["task"] == "i2v" and record["parallel"]["world_size"] == 2
    assert record["split_work"] == {"text_encoder_ranks": [0]}  # TI2V-5B opened as I2V too
    assert record["image"] == reference["image"] and record.get("end_image") == reference.get("end_image")
    path = Path(record["path"])
    assert read_record(path)["request"]["image"] == pictures["image"]
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (
        reference["frames"],
        reference["width"],
        reference["height"],
    )
    frames = np.load(path.with_suffix(".npy"))
    assert frames.shape == expected.shape
    assert np.abs(frames - expected).max() <= tolerance


def perturb_rank_1_conditioning() -> None:
    """Each rank of the group below: one thread, frames kept; rank 1's image encoder and VAE latents
    come out shifted (as kernels that disagree would make them), which rank 0's broadcast must undo."""
    import torch.distributed as dist
    from diffusers import WanImageToVideoPipeline

    from core.tasks import wan_output as output_module

    torch.set_num_threads(1)
    output_module.write_video = _write_video_and_frames
    if dist.get_rank() != 1:
        return
    for name in ("encode_image", "prepare_latents"):
        original = getattr(WanImageToVideoPipeline, name)

        def shifted(self, *args, _original=original, **kwargs):
            result = _original(self, *args, **kwargs)
            return tuple(t + 0.5 for t in result) if isinstance(result, tuple) else result + 0.5

        setattr(WanImageToVideoPipeline, name, shifted)


def test_every_rank_starts_from_rank_0s_image_conditioning(
    parallel_settings: Settings, pictures: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wan_output, "write_video", _write_video_and_frames)
    data = request_data("tiny-wan-i2v", pictures)
    _reference, expected = single_process(parallel_settings, data)
    with SplitGroup(parallel_settings, 2, rank_setup=perturb_rank_1_conditioning) as group:
        job = Job(parse_request(data))
        record = group.run(job, job.request, ("cfg",))
    frames = np.load(Path(record["path"]).with_suffix(".npy"))
    assert np.array_equal(frames, expected)


def two_experts(card, folder, device, level, **options):
    """tiny-wan-i2v laid out as Wan2.2 I2V A14B (loaded with ``load_diffusers_pipeline``'s ``options``): no
    image encoder, a second expert for the low-noise half (the DiT with its output halved, so the switch
    shows) and ``boundary_ratio``."""
    import copy

    from diffusers import WanImageToVideoPipeline

    pipe = load_diffusers_pipeline(card, folder, device, level, **options)
    pipe.transformer.register_to_config(image_dim=None)  # Wan2.2's DiT takes no image embedding
    low_noise = copy.deepcopy(pipe.transformer)
    low_noise.proj_out.weight.data.mul_(0.5)
    parts = {**pipe.components, "image_encoder": None, "image_processor": None, "transformer_2": low_noise}
    moe = WanImageToVideoPipeline(**parts, boundary_ratio=0.5)
    moe.set_progress_bar_config(disable=True)
    return moe


def use_two_experts() -> None:
    """This rank's pipelines load as :func:`two_experts` (and keep their frames)."""
    from core.parallel import split_rank

    torch.set_num_threads(1)
    wan_output.write_video = _write_video_and_frames
    split_rank.load_diffusers_pipeline = two_experts


def test_a_two_expert_image_to_video_model_splits_like_one_process(
    parallel_settings: Settings, pictures: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wan_output, "write_video", _write_video_and_frames)
    data = request_data("tiny-wan-i2v", pictures) | {"guidance_2": 3.0, "steps": 4}
    _reference, expected = single_process(parallel_settings, data, two_experts)
    with SplitGroup(parallel_settings, 2, rank_setup=use_two_experts) as group:
        job = Job(parse_request(data))
        record = group.run(job, job.request, ("cfg",))
    assert record["parallel"]["cfg"] == 2
    frames = np.load(Path(record["path"]).with_suffix(".npy"))
    assert np.array_equal(frames, expected)
