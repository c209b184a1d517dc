"""The models each tab opens on, from the machine: the tiny ones on a CPU (said on the page), the real ones
on a GPU that fits them, the tiny ones first with --dev; what a failed download says; the pad fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.lineup import DEV, FULL, LIGHT, decide_lineup
from core.upscale.sizing import cut_back, plan_size, resize_and_crop
from weights.failure import download_failure_message
from weights.registry import get_card
from weights.sources import SourceError


def first(lineup, task: str) -> str:
    return lineup.cards(task)[0].id


def test_a_cpu_opens_every_tab_on_a_tiny_model_and_says_so() -> None:
    lineup = decide_lineup(False, [], False, lambda card: False)
    assert lineup.mode == LIGHT
    assert [first(lineup, t) for t in ("t2v", "continue", "upscale")] == [
        "tiny-wan",
        "tiny-skyreels-df",
        "tiny-esrgan",
    ]
    upscalers = [c.id for c in lineup.cards("upscale") if not c.dev]
    assert upscalers[-1] == "flashvsr-v1.1"  # Real-ESRGAN (runs on a CPU) before the GPU-only FlashVSR
    assert "wan2.1-t2v-1.3b" in {c.id for c in lineup.cards("t2v")}  # real models one choice away
    notice = lineup.notice()
    assert "No CUDA GPU" in notice and "Wan2.1 T2V 1.3B" in notice and "8 GB" in notice and "29 GB" in notice


def test_a_cpu_opens_on_a_real_model_that_runs_there_when_its_weights_are_here() -> None:
    lineup = decide_lineup(False, [], False, lambda card: card.id == "realesrgan-x4plus")
    assert first(lineup, "upscale") == "realesrgan-x4plus" and first(lineup, "t2v") == "tiny-wan"


def test_a_gpu_too_small_for_any_real_model_is_light_and_a_fitting_one_is_full() -> None:
    small = decide_lineup(False, [4.0], False, lambda card: False)
    assert small.mode == LIGHT and "4 GB" in small.notice()
    eight = decide_lineup(False, [8.0], False, lambda card: False)
    assert eight.mode == FULL and eight.notice() == ""
    assert first(eight, "t2v") == "wan2.1-t2v-1.3b"
    assert first(eight, "upscale").startswith("realesr")  # FlashVSR needs 12 GB: the fitting ones first
    assert all(not c.dev for c in eight.cards("t2v"))
    big = decide_lineup(False, [80.0], False, lambda card: False)
    assert first(big, "upscale") == "flashvsr-v1.1" and first(big, "continue") == "skyreels-v2-df-1.3b-540p"


def test_dev_opens_every_tab_on_a_tiny_model_even_on_a_big_gpu() -> None:
    lineup = decide_lineup(True, [80.0], False, lambda card: True)
    assert lineup.mode == DEV and "--dev" in lineup.notice()
    assert all(lineup.cards(t)[0].dev for t in ("t2v", "continue", "upscale"))


def test_a_space_is_full() -> None:
    assert decide_lineup(False, [], True, lambda card: False).mode == FULL


def test_a_download_without_connection_says_what_to_try_and_claims_nothing_kept(tmp_path: Path) -> None:
    card = get_card("wan2.1-t2v-1.3b")
    try:
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")
    except ConnectionError as cause:
        error = SourceError("Hugging Face (Wan-AI/...): ConnectError: ...")
        error.__cause__ = cause
    folder = tmp_path / card.id
    message = download_failure_message(card, folder, [error])
    assert "could not reach" in message and "HF_ENDPOINT" in message and "--offline" in message
    assert str(folder) in message and "kept" not in message and "Traceback" not in message
    (folder / ".download").mkdir(parents=True)
    (folder / ".download" / "a.part").write_bytes(b"x" * 2048)
    assert "2.0 KB arrived and is kept" in download_failure_message(card, folder, [error])


def test_a_gated_repo_asks_for_a_token(tmp_path: Path) -> None:
    error = SourceError("Hugging Face (x/y): GatedRepoError: 403 Client Error: Forbidden")
    message = download_failure_message(get_card("wan2.1-t2v-1.3b"), tmp_path / "m", [error])
    assert "HF_TOKEN" in message and "gated" in message


def test_pad_keeps_the_whole_picture_of_a_4_3_clip() -> None:
    crop = plan_size(160, 120, 4, align=128)
    assert (crop.width, crop.height) == (640, 384)  # a fifth of the height cut
    pad = plan_size(160, 120, 4, align=128, fit="pad")
    assert (pad.width, pad.height, pad.model_width, pad.model_height) == (640, 480, 640, 512)
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    model_frame = resize_and_crop(frame, pad)
    assert model_frame.shape == (512, 640, 3)
    assert (model_frame[480:] == model_frame[479:480]).all()  # padded with the edge row
    assert cut_back(model_frame[None], pad).shape == (1, 480, 640, 3)
    assert "padded to 640x512" in pad.describe()


def test_a_file_error_names_the_file_not_its_temp_path(tmp_path: Path) -> None:
    import av

    from core.errors import readable_error
    from core.metrics import lpips_unavailable_reason

    bad = tmp_path / "gradio" / "0123abcd" / "clip.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a video" * 100)
    try:
        av.open(str(bad))
    except av.FFmpegError as exc:
        text = readable_error(exc)
    assert text.startswith("InvalidDataError: clip.mp4: Invalid data") and "re-export" in text
    assert "Errno" not in text and str(bad.parent) not in text
    reason = lpips_unavailable_reason()
    assert reason is None or "ModuleNotFoundError" not in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU default")
def test_the_batch_command_runs_a_prompt_list_without_model(tmp_path: Path, capsys) -> None:
    from core.batch import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lighthouse at night\n", encoding="utf-8")
    main([str(prompts), "--outputs", str(tmp_path / "out"), "--models-dir", str(tmp_path / "m"), "--offline"])
    out = capsys.readouterr().out
    assert "use tiny-wan" in out and "done" in out and "bad" not in out


def test_run_sh_help_lists_its_own_options_and_the_launch_line_names_share() -> None:
    import subprocess

    from app import launch_message
    from core.settings import ROOT

    out = subprocess.run(
        ["bash", str(ROOT / "installer" / "run.sh"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(flag in out for flag in ("--update", "--cpu", "--dry-run", "--shortcut", "--dev"))
    line = launch_message("http://127.0.0.1:7860/", None)
    assert "--share" in line and "share=True" not in line


def test_continue_this_opens_a_tiny_continuation_model_for_a_tiny_clip(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from core.facade import Facade
    from core.settings import Settings
    from core.video_io import METADATA_KEY, write_video

    frames = np.zeros((5, 48, 64, 3), dtype=np.uint8)
    tiny_clip = write_video(tmp_path / "tiny.mp4", frames, 16, {METADATA_KEY: {"model": "tiny-wan"}})
    other = write_video(tmp_path / "other.mp4", frames, 16)
    facade = Facade(SimpleNamespace(settings=Settings(outputs_dir=tmp_path, models_dir=tmp_path / "m")))
    real = "skyreels-v2-df-1.3b-540p"
    assert facade.continuation_for(str(tiny_clip), real) == "tiny-skyreels-df"
    assert facade.continuation_for(str(other), real) == real  # no record: the user's choice stays
    assert facade.continuation_for(None, real) == real
