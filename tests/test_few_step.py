"""The few-step mode: card settings become the request's defaults, CFG on the first step only, the mode
end to end through the launched app, and a few-step LoRA fetched from the (fake) Hub by repo and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gradio_client import Client
from lora_files import tiny_lora, write_lora

from core.jobs import Job
from core.lora import parse_loras, resolve_lora
from core.pipelines import load_diffusers_pipeline
from core.tasks.t2v import T2VRequest, generate_t2v
from core.validation import ConfigError
from core.video_io import probe_video, read_record
from weights.registry import get_card

pytest_plugins = ["tests.conftest_weights"]


def test_card_settings_are_the_defaults() -> None:
    fast = T2VRequest(model="wan2.2-t2v-a14b", prompt="a cat", few_step=True)
    assert (fast.steps, fast.guidance, fast.guidance_2, fast.flow_shift) == (4, 1.0, 1.0, 5.0)
    assert [(lora.repo, lora.expert) for lora in fast.loras] == [
        ("lightx2v/Wan2.2-Lightning", "high"),
        ("lightx2v/Wan2.2-Lightning", "low"),
    ]
    assert all(lora.fuse for lora in fast.loras)  # merged into the DiT: no cost per step
    style = T2VRequest(
        model="wan2.1-t2v-14b", prompt="a", few_step=True, loras=[{"name": "style", "strength": 0.8}]
    )
    assert [(lora.name, lora.fuse) for lora in style.loras] == [
        ("loras/Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors", True),
        ("style", False),
    ]  # the user's LoRAs go beside the step-distill one, whose strength a listed entry sets:
    again = T2VRequest(**{k: v for k, v in style.to_dict().items() if k != "task"})
    assert again.loras == style.loras
    local = "loras__Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"  # as downloaded
    mine = T2VRequest(
        model="wan2.1-t2v-14b", prompt="a", few_step=True, loras=[{"name": local, "strength": 0.6}]
    )
    (only,) = mine.loras  # the file once, not twice, fetched and merged as the preset's, at 0.6
    assert (only.repo, only.strength, only.fuse) == (style.loras[0].repo, 0.6, True)
    high = "Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1__high_noise_model.safetensors"
    with pytest.raises(ConfigError, match="into the high-noise expert; list it with expert high or both"):
        T2VRequest(
            model="wan2.2-t2v-a14b", prompt="a", few_step=True, loras=[{"name": high, "expert": "low"}]
        )
    assert T2VRequest(model="fastwan2.1-t2v-1.3b", prompt="a").steps == 3
    with pytest.raises(ConfigError, match="no few-step mode; models with one"):
        T2VRequest(model="wan2.1-t2v-1.3b", prompt="a", few_step=True)


def test_cfg_on_the_first_step_only(models_dir: Path) -> None:
    pipe = load_diffusers_pipeline(get_card("tiny-wan"), models_dir / "tiny-wan", torch.device("cpu"), 0)
    calls: list[int] = []
    pipe.transformer.register_forward_pre_hook(lambda m, args: calls.append(1))
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=1, few_step=True, first_step_guidance=4.0)
    assert request.steps == 2 and request.guidance == 1.0
    first = generate_t2v(pipe, request, Job(None))
    assert len(calls) == 3  # step 1: conditional + unconditional; step 2: conditional only
    calls.clear()
    plain = generate_t2v(pipe, T2VRequest(model="tiny-wan", prompt="a cat", seed=1, few_step=True), Job(None))
    assert len(calls) == 2 and abs(first - plain).max() > 1e-4
    calls.clear()
    generate_t2v(pipe, T2VRequest(model="tiny-wan", prompt="a cat", seed=1, steps=2), Job(None))
    assert len(calls) == 4 and type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"  # scheduler back


@pytest.mark.e2e
def test_few_step_through_the_app(launched_app) -> None:
    client = Client(launched_app.url, verbose=False)
    video, _details, status = client.predict(
        model_id="tiny-wan",
        resolution_label="small landscape (64x48)",
        prompt_text="a bird over the sea",
        frame_count=9,
        seed_value=5,
        few_step=True,
        first_step_guidance=3.5,
        api_name="/t2v",
    )
    info = probe_video(Path(video))
    assert (info.frames, info.fps) == (9, 16.0)
    record = read_record(Path(video))
    assert record["request"]["few_step"] is True and record["request"]["steps"] == 2
    assert record["request"]["guidance"] == 1.0 and record["few_step"]["first_step_guidance"] == 3.5
    assert status.startswith("Done")


def test_lora_download_from_the_hub(hub, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_lora(repo / "loras", "step_distill.safetensors", tiny_lora("comfyui"))
    hub.add_repo("test-org/tiny-lora", repo)
    spec = parse_loras([{"name": "loras/step_distill.safetensors", "repo": "test-org/tiny-lora"}])[0]
    loras = tmp_path / "loras"
    hub.faults.drop_after["loras/step_distill.safetensors"] = 2000
    resolved = resolve_lora(spec, loras)  # the dropped transfer is retried; verified by SHA-256
    assert resolved.path == loras / "loras__step_distill.safetensors" and len(resolved.sha256) == 64
    assert len(hub.range_starts("loras/step_distill.safetensors")) == 2  # dropped, then fetched again
    requests = hub.total_requests
    assert resolve_lora(spec, loras).sha256 == resolved.sha256 and hub.total_requests == requests
