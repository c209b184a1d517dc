"""MAGI-1 in the app on the tiny model: requests, text to video and continuation through the runner,
the growing preview, cancel, special tokens, the tabs and the /t2v API."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from core.continuation import ContinueRequest
from core.magi import preset
from core.magi.models import ASSETS_DIR, dit_config, special_tokens_file
from core.magi.request import MagiRequest, context_frames, run_config, variant
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import T2VRequest
from core.tiny.magi import TINY_T5_DIM
from core.validation import ConfigError
from core.video_io import probe_video, read_record
from weights.registry import get_card
from weights.store import ModelMissingError

pytest_plugins = ["tests.conftest_magi_app"]


def t2v(**fields) -> MagiRequest:
    return parse_request({"task": "t2v", "model": "tiny-magi", "prompt": "a cat runs"} | fields)


# --- weights -------------------------------------------------------------------------------------------


def test_tiny_snapshot_fits_the_card_and_real_cards_use_the_published_preset(magi_models_dir, tmp_path):
    card = get_card("tiny-magi")
    config = dit_config(card, magi_models_dir / "tiny-magi")
    assert config.caption_channels == TINY_T5_DIM
    assert config.caption_max_length == card.extra["caption_max_length"]
    assert config.distill and variant(card) == "4.5B_distill"
    for name in ("4.5B_base", "4.5B_distill_quant"):
        real = get_card("magi-1-" + name.lower().replace("_", "-"))
        assert variant(real) == name and dit_config(real, tmp_path) == preset(name)
    assert run_config(get_card("magi-1-4.5b-distill")).reach == 5


def test_special_tokens_are_fetched_once_from_the_card_url(tmp_path):
    source = tmp_path / "asset" / "special_tokens.npz"
    source.parent.mkdir()
    source.write_bytes(b"npz")
    card = dataclasses.replace(
        get_card("magi-1-4.5b-distill"),
        extra=get_card("magi-1-4.5b-distill").extra | {"special_tokens_url": source.as_uri()},
    )
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    online = Settings(outputs_dir=tmp_path / "o", models_dir=tmp_path / "models", offline=False)
    fetched = special_tokens_file(card, snapshot, online)
    assert fetched == tmp_path / "models" / ASSETS_DIR / "special_tokens.npz"
    assert fetched.read_bytes() == b"npz"
    source.unlink()
    assert special_tokens_file(card, snapshot, online) == fetched  # not fetched again
    offline = dataclasses.replace(online, models_dir=tmp_path / "other", offline=True)
    with pytest.raises(ModelMissingError, match="place it in"):
        special_tokens_file(card, snapshot, offline)
    (snapshot / "special_tokens.npz").write_bytes(b"x")
    assert special_tokens_file(card, snapshot, offline) == snapshot / "special_tokens.npz"


# --- requests ------------------------------------------------------------------------------------------


def test_magi_requests_take_chunks_frames_or_seconds_and_card_defaults():
    request = t2v()
    assert isinstance(request, MagiRequest) and request.task == "t2v"
    card = get_card("tiny-magi")
    assert (request.chunks, request.frames, request.steps, request.guidance) == (2, 48, 4, 1.0)
    assert (request.window_size, request.resolution, request.size) == (2, "tiny", (64, 64))
    assert t2v(frames=72).chunks == 3 and t2v(seconds=1.1).chunks == 2 and t2v(chunks=5).frames == 120
    assert t2v(resolution="64x64").resolution == "tiny" and t2v(resolution="tiny (64x64)").size == (64, 64)
    again = parse_request(t2v(seconds=1.5, seed=7).to_dict())
    assert again == t2v(seconds=1.5, seed=7, chunks=2, frames=48)
    real = parse_request({"task": "t2v", "model": "magi-1-4.5b-distill", "prompt": "x"})
    assert (real.chunks, real.steps, real.window_size, real.size) == (4, 64, 4, (720, 720))
    base = parse_request({"task": "t2v", "model": "magi-1-4.5b-base", "prompt": "x", "steps": 20})
    assert (base.guidance, base.steps) == (7.5, 20)
    assert context_frames(card, 32) == 24 and context_frames(card, 500) == 96


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frames": 50}, "whole chunks of 24 frames: frames must be a multiple of 24 \\(e.g. 48 or 72\\)"),
        ({"chunks": 2, "frames": 24}, "they disagree"),
        ({"model": "magi-1-4.5b-distill", "guidance": 5.0}, "guidance-distilled: guidance must be 1"),
        ({"model": "magi-1-4.5b-distill", "steps": 20}, "steps must be one of 8, 12, 16, 32, 64, got 20"),
        ({"model": "magi-1-4.5b-base", "steps": 30}, "must be a multiple of window_size \\(4\\)"),
        ({"window_size": 5}, "window size must be between 1 and 4"),
        ({"chunks": 61}, "chunks must be between 1 and 60"),
        ({"resolution": "1280x720"}, "makes tiny \\(64x64\\)"),
        ({"negative_prompt": "x"}, "unknown field\\(s\\) negative_prompt"),
        ({"video": "clip.mp4"}, "takes no input video"),
        ({"kv_budget": -1}, "KV budget must be between"),
        ({"resolution": 64}, "resolution must be text"),
    ],
)
def test_bad_magi_requests_are_clear_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        t2v(**fields)


def test_the_wan_and_skyreels_requests_send_magi_models_to_their_own_request(clip_with_sound):
    with pytest.raises(ConfigError, match="whole chunks: send it as a request dict"):
        T2VRequest(model="tiny-magi", prompt="x")
    with pytest.raises(ConfigError, match="continues in whole chunks"):
        ContinueRequest(model="tiny-magi", video=str(clip_with_sound), prompt="x")
    with pytest.raises(ConfigError, match="input video not found"):
        parse_request({"task": "continue", "model": "tiny-magi", "prompt": "x", "video": "nope.mp4"})
    request = parse_request(
        {"task": "continue", "model": "tiny-magi", "prompt": "x", "video": str(clip_with_sound)}
    )
    assert request.task == "continue" and request.resolution is None and request.size is None


def test_cache_and_kv_budget_run_and_are_recorded(runner):
    from core.facade.text import chunk_cache_summary
    from tests.conftest_magi_app import WatchedJob

    hooks, policy = t2v(cache={"preset": "fast"}, kv_budget=1000).cache_parts()
    assert hooks is not None and policy is not None
    assert t2v().cache_parts() == (None, None)
    with pytest.raises(ConfigError, match="cache preset"):
        t2v(cache={"preset": "fastest"})
    record = runner.execute(WatchedJob(t2v(chunks=2, seed=2, cache={"preset": "faster"}, kv_budget=64)))
    assert probe_video(Path(record["path"])).frames == 48
    assert read_record(Path(record["path"]))["request"]["kv_budget"] == 64
    summary = chunk_cache_summary(record["cache"])
    assert summary.startswith(" · flowcache reused ") and summary.endswith(" · KV budget 64 tokens")
    assert chunk_cache_summary({}) == ""


# --- running -------------------------------------------------------------------------------------------


def test_text_to_video_makes_whole_chunks_with_a_growing_preview(runner, encoded_frames):
    from tests.conftest_magi_app import WatchedJob

    job = WatchedJob(t2v(chunks=2, seed=5))
    record = runner.execute(job)
    path = Path(record["path"])
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (48, 64, 64, 24.0)
    embedded = read_record(path)
    assert embedded["request"]["chunks"] == 2 and embedded["seed"] == 5 and embedded["status"] == "done"
    assert embedded["task"] == "t2v" and embedded["chunks_done"] == 2 and embedded["peak_memory_gb"] > 0
    assert embedded["generation"]["dit_calls"] > 0
    assert json.loads(path.with_suffix(".json").read_text())["output"] == path.name
    assert [frames for _, frames in job.previews] == [24, 48]
    assert [Path(p).exists() for p, _ in job.previews] == [False, True]  # the last stays a while for the UI
    denoising = [r for r in job.reports if r[0] == "denoising"]
    assert denoising[-1][1] == denoising[-1][2] > 0
    loaded = runner.models.get(get_card("tiny-magi"), runner.settings.models_dir / "tiny-magi")
    assert runner.models.loaded_id == "tiny-magi"
    again = runner.execute(WatchedJob(t2v(chunks=2, seed=5)))
    assert runner.models.get(get_card("tiny-magi"), runner.settings.models_dir / "tiny-magi") is loaded
    assert np.array_equal(encoded_frames(again["path"]), encoded_frames(path))  # same seed, same frames


def test_continuing_keeps_the_clip_and_its_sound_and_adds_whole_chunks(runner, clip_with_sound):
    from tests.conftest_magi_app import WatchedJob

    fields = {"task": "continue", "model": "tiny-magi", "prompt": "a cat", "video": str(clip_with_sound)}
    request = parse_request(fields | {"chunks": 1})
    job = WatchedJob(request)
    record = runner.execute(job)
    path = Path(record["path"])
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (32 + 24, 64, 64, 24.0)
    assert (record["input_frames"], record["added_frames"], record["context_frames"]) == (32, 24, 24)
    assert record["input"] == "input 80x48 30 fps → 64x64 24 fps, using last 24 frames"
    with av.open(str(path)) as container:
        assert container.streams.audio and record["audio"]
    assert read_record(path)["task"] == "continue" and job.previews[-1][1] == 24

    only = dataclasses.replace(request, continuation_only=True, seconds=1.0, chunks=0, frames=0)
    record = runner.execute(WatchedJob(only))
    assert probe_video(Path(record["path"])).frames == 24 and not record["audio"]


def test_cancel_after_the_first_chunk_keeps_a_playable_partial_file(runner):
    from tests.conftest_magi_app import WatchedJob

    job = WatchedJob(t2v(chunks=3, seed=1), cancel_after_previews=1)
    record = runner.execute(job)
    path = Path(record["path"])
    assert record["status"] == "cancelled" and path.name.endswith("_partial.mp4")
    assert probe_video(path).frames == 24 * record["chunks_done"] >= 24
    assert read_record(path)["status"] == "cancelled" and path.with_suffix(".json").is_file()


def test_a_failure_after_a_chunk_keeps_it_and_says_so(runner):
    from tests.conftest_magi_app import WatchedJob

    with pytest.raises(RuntimeError, match=r"failed after 1 chunks: disk on fire; kept .*_partial\.mp4"):
        runner.execute(WatchedJob(t2v(chunks=2, seed=1), fail_after_previews=1))
    (kept,) = runner.settings.outputs_dir.glob("*_partial.mp4")
    assert probe_video(kept).frames == 24 and read_record(kept)["status"] == "failed"


# --- tabs and API --------------------------------------------------------------------------------------


def test_tabs_list_magi_and_switch_to_its_options(magi_runner, clip_with_sound):
    import gradio as gr

    from core.facade import Facade
    from core.facade.encode import continue_request, t2v_request
    from core.studio import Studio
    from ui import continue_tab, t2v_tab

    studio = Studio(magi_runner.settings)
    facade = Facade(studio)
    try:
        with gr.Blocks() as demo:
            t2v_tab.build_t2v_tab(facade)
            continue_tab.build_continue_tab(facade)
        models = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model"]
        assert all({"tiny-magi", "magi-1-4.5b-distill"} <= {v for _, v in m.choices} for m in models)
    finally:
        studio.shutdown()
    form = facade.form("t2v", "tiny-magi")
    hidden = ("frame_count", "negative_text", "flow_shift", "step_speed", "memory")
    assert [form[name]["visible"] for name in (*hidden, "magi_options")] == [False] * 5 + [True]
    chunks = form["chunks"]
    assert chunks["value"] == 2 and chunks["info"] == "2 chunks = 48 frames = 2.00 s at 24 fps"
    assert facade.form("t2v", "tiny-wan")["magi_options"]["visible"] is False
    values = {"model_id": "tiny-magi", "prompt_text": "a cat runs", "resolution_label": "tiny (64x64)"}
    values |= {"step_count": 4, "guidance_scale": 1.0, "seed_value": 3, "chunks": 1, "window": 2}
    data = t2v_request(values | {"kv_budget": 0, "chunk_speed": "Off"})
    assert parse_request(data) == t2v(chunks=1, seed=3)
    form = facade.form("continue", "tiny-magi")
    hidden = ("negative_text", "forcing", "flow_shift", "memory")
    assert [form[name]["visible"] for name in (*hidden, "magi_options")] == [False] * 4 + [True]
    values = {"model_id": "tiny-magi", "video_path": str(clip_with_sound), "prompt_text": "a cat"}
    values |= {"seconds_to_add": 1.5, "keep": True, "step_count": 4, "guidance_scale": 1.0, "seed_value": 3}
    values |= {"window": 1, "kv_budget": 0, "speed_preset": "Off", "cache_threshold": None}
    request = parse_request(continue_request(values))
    assert (request.chunks, request.window_size, request.continuation_only) == (2, 1, False)
    assert facade.describe_clip(str(clip_with_sound), "tiny-magi", 0) == (
        "input 80x48 30 fps → 64x64 24 fps, using last 24 frames"
    )


@pytest.mark.e2e
def test_t2v_api_makes_a_magi_video(launched_app, magi_models_dir):
    from gradio_client import Client, handle_file

    client = Client(launched_app.url, verbose=False)
    job = client.submit(
        model_id="tiny-magi",
        prompt_text="a bird over the sea",
        resolution_label="tiny",
        step_count=4,
        guidance_scale=1.0,
        seed_value=11,
        chunks=2,
        window=2,
        api_name="/t2v",
    )
    video, details, status = job.result()
    info = probe_video(Path(video))
    assert (info.frames, info.width, info.height, info.fps) == (48, 64, 64, 24.0)
    assert details["chunks"] == 2 and details["seed"] == 11 and status.startswith("Done")
    assert read_record(Path(video))["request"]["prompt"] == "a bird over the sea"
    previews = [out[0] for out in job.outputs()[:-1] if isinstance(out, tuple) and isinstance(out[0], str)]
    grown = [probe_video(Path(p)).frames for p in previews]  # the result video grows chunk by chunk
    assert grown and grown == sorted(set(grown)) and set(grown) <= {24, 48}
    longer, details, _ = client.predict(
        model_id="tiny-magi",
        video_path=handle_file(video),
        prompt_text="the bird lands",
        seconds_to_add=1,
        keep=True,
        step_count=4,
        guidance_scale=1.0,
        window=1,
        api_name="/continue",
    )
    assert probe_video(Path(longer)).frames == 48 + 24 and details["window_size"] == 1
    with pytest.raises(Exception, match="guidance must be 1"):
        client.predict(
            model_id="magi-1-4.5b-distill", prompt_text="x", step_count=8, guidance_scale=5.0, api_name="/t2v"
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_magi_runs_on_the_gpu_in_bfloat16(magi_models_dir, tmp_path):
    from core.runner import Runner
    from tests.conftest_magi_app import WatchedJob

    settings = Settings(outputs_dir=tmp_path / "outputs", models_dir=magi_models_dir, offline=True, dev=True)
    runner = Runner(settings, torch.device("cuda"))
    record = runner.execute(WatchedJob(t2v(chunks=2, seed=0)))
    assert probe_video(Path(record["path"])).frames == 48
    assert (record["device"], record["dtype"]) == ("cuda", "bfloat16") and record["peak_memory_gb"] > 0
    models = runner.models.get(get_card("tiny-magi"), magi_models_dir / "tiny-magi")
    assert models.dit.device.type == "cuda" and models.vae.device.type == "cuda"
    free_gb = torch.cuda.mem_get_info()[0] / 2**30
    assert record["text_encoder_device"].startswith("cuda") == (free_gb > 35)
