"""Downloading weights from the (fake) hubs: fresh, resumed, fallback, corrupt, disk, offline, HF cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_hub import (
    BIG_FILE,
    CHUNK,
    FLASHVSR_FILES,
    FLASHVSR_REPO,
    TINY_REPO,
    flashvsr_card,
    point_clients_at,
    tiny_repo_card,
)

from core.jobs import JobCancelledError
from weights import download as download_module
from weights.download import READY_MARKER, WORK_DIR, DownloadError, NotEnoughDiskError, download_model
from weights.store import ModelMissingError, ensure_model, model_status

pytest_plugins = ["tests.conftest_weights"]
ROOT = Path(__file__).resolve().parent.parent


def file_gets(hub, family: str = "huggingface") -> dict[str, int]:
    return {key[1]: n for key, n in hub.requests.items() if key[0] == family and key[2:] == ("GET",)}


def test_fresh_download_loads_with_diffusers_and_generates(hub, hub_settings, tiny_wan_repo):
    import torch
    from diffusers import WanPipeline

    seen = []
    folder = ensure_model(tiny_repo_card(), hub_settings, on_progress=seen.append)

    served = hub.repos[TINY_REPO]
    assert folder == hub_settings.models_dir / "tiny-wan"
    assert (folder / READY_MARKER).is_file() and not (folder / WORK_DIR).exists()
    assert file_gets(hub) == dict.fromkeys(served, 1)
    assert dict(hub.bytes_served) == {path: len(f.data) for path, f in served.items() if f.data}
    assert seen[-1].bytes_done == seen[-1].bytes_total == sum(len(f.data) for f in served.values())
    assert seen[-1].stage == "ready" and "ETA" in seen[-2].describe()
    assert model_status(tiny_repo_card(), hub_settings).state == "ready"

    pipe = WanPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    video = pipe(
        "a cat walking",
        height=48,
        width=64,
        num_frames=5,
        num_inference_steps=2,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert video.shape == (1, 5, 48, 64, 3)


def test_only_allow_patterns_are_fetched(hub, hub_settings):
    folder = ensure_model(flashvsr_card(), hub_settings)

    assert sorted(file_gets(hub)) == sorted([*FLASHVSR_FILES, "README.md"])
    assert not (folder / "assets.txt").exists()
    for name in FLASHVSR_FILES:
        assert (folder / name).read_bytes() == hub.repos[FLASHVSR_REPO][name].data


def test_killed_download_resumes_without_fetching_bytes_twice(hub, hub_settings):
    stall_at = 4 * CHUNK
    hub.faults.stall_after[BIG_FILE] = stall_at
    folder = hub_settings.models_dir / "test-flashvsr"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from huggingface_hub import constants
        constants.DOWNLOAD_CHUNK_SIZE = {CHUNK}
        from fake_hub import flashvsr_card
        from weights.download import download_model
        download_model(flashvsr_card(), {str(folder)!r})
    """)
    env = os.environ | point_clients_at(hub.url)
    child = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = list((folder / WORK_DIR).glob(f"{BIG_FILE}.*.part"))
            if parts and parts[0].stat().st_size == stall_at:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never received the first bytes of the big file")
    finally:
        child.kill()
        child.wait()
    hub.faults.release.set()
    assert not (folder / READY_MARKER).exists()
    assert model_status(flashvsr_card(), hub_settings).state == "partial"

    ensure_model(flashvsr_card(), hub_settings)

    size = FLASHVSR_FILES[BIG_FILE]
    assert hub.transfers[BIG_FILE] == [(0, stall_at), (stall_at, size - stall_at)]
    assert hub.bytes_served[BIG_FILE] == size
    assert (folder / BIG_FILE).read_bytes() == hub.repos[FLASHVSR_REPO][BIG_FILE].data
    assert (folder / READY_MARKER).is_file()


@pytest.mark.parametrize("prefer", ["huggingface", "modelscope"])
def test_cancel_keeps_bytes_and_next_run_resumes(hub, hub_settings, prefer):
    card = flashvsr_card(prefer=prefer)
    big = FLASHVSR_FILES[BIG_FILE]

    folder = hub_settings.models_dir / card.id

    def cancel_mid_big_file() -> bool:
        parts = list((folder / WORK_DIR).glob(f"{BIG_FILE}.*.part"))
        return bool(parts) and parts[0].stat().st_size >= 2 * CHUNK

    with pytest.raises(JobCancelledError):
        ensure_model(card, hub_settings, should_cancel=cancel_mid_big_file)
    assert not (folder / READY_MARKER).exists()
    kept = next((folder / WORK_DIR).glob(f"{BIG_FILE}.*.part")).stat().st_size
    assert 0 < kept < big

    ensure_model(card, hub_settings)

    assert hub.range_starts(BIG_FILE) == [0, kept]
    assert hub.transfers[BIG_FILE][1] == (kept, big - kept)
    assert (folder / BIG_FILE).read_bytes() == hub.repos[FLASHVSR_REPO][BIG_FILE].data


def test_dropped_connection_is_resumed_by_the_client(hub, hub_settings):
    hub.faults.drop_after[BIG_FILE] = 3 * CHUNK
    folder = ensure_model(flashvsr_card(), hub_settings)

    assert hub.range_starts(BIG_FILE) == [0, 3 * CHUNK]
    assert hub.bytes_served[BIG_FILE] == FLASHVSR_FILES[BIG_FILE]
    assert (folder / READY_MARKER).is_file()


def test_hub_down_falls_back_to_modelscope(hub, hub_settings):
    hub.faults.down.add("huggingface")
    seen = []
    folder = ensure_model(flashvsr_card(), hub_settings, on_progress=seen.append)

    assert file_gets(hub, "huggingface") == {}
    assert sorted(file_gets(hub, "modelscope")) == sorted([*FLASHVSR_FILES, "README.md"])
    assert seen[-1].source == "modelscope"
    assert (folder / READY_MARKER).is_file()


def test_both_hubs_down_gives_one_clear_error_and_nothing_ready(hub, hub_settings):
    hub.faults.down.update({"huggingface", "modelscope"})
    with pytest.raises(DownloadError) as caught:
        ensure_model(flashvsr_card(), hub_settings)

    message = str(caught.value)
    assert "Hugging Face" in message and "ModelScope" in message and FLASHVSR_REPO in message
    assert "Nothing was marked ready" in message
    assert not (hub_settings.models_dir / "test-flashvsr" / READY_MARKER).exists()
    assert model_status(flashvsr_card(), hub_settings).state == "missing"


def test_corrupted_file_is_detected_and_fetched_again(hub, hub_settings):
    hub.faults.corrupt["Wan2.1_VAE.pth"] = 1
    folder = ensure_model(flashvsr_card(), hub_settings)

    assert file_gets(hub)["Wan2.1_VAE.pth"] == 2
    assert (folder / "Wan2.1_VAE.pth").read_bytes() == hub.repos[FLASHVSR_REPO]["Wan2.1_VAE.pth"].data


def test_small_file_failing_its_git_sha1_twice_comes_from_modelscope(hub, hub_settings):
    hub.faults.corrupt["vae/config.json"] = 2
    folder = ensure_model(tiny_repo_card(), hub_settings)

    assert file_gets(hub)["vae/config.json"] == 2
    # files Hugging Face already delivered and verified are kept; ModelScope serves only the rest
    rest = {"vae/config.json": 1, "vae/diffusion_pytorch_model.safetensors": 1}
    assert file_gets(hub, "modelscope") == rest
    assert (folder / "vae/config.json").read_bytes() == hub.repos[TINY_REPO]["vae/config.json"].data


def test_not_enough_disk_is_refused_before_any_file(hub, hub_settings, monkeypatch):
    monkeypatch.setattr(download_module, "free_disk_bytes", lambda folder: 1_000_000)
    with pytest.raises(NotEnoughDiskError, match="Not enough disk space"):
        download_model(flashvsr_card(), hub_settings.models_dir / "x")

    assert hub.bytes_served == {} and file_gets(hub) == {}


def test_offline_with_model_present_makes_no_request(hub, hub_settings, monkeypatch):
    ensure_model(flashvsr_card(), hub_settings)
    hub.reset()
    offline = type(hub_settings)(
        outputs_dir=hub_settings.outputs_dir, models_dir=hub_settings.models_dir, offline=True
    )

    assert ensure_model(flashvsr_card(), offline) == hub_settings.models_dir / "test-flashvsr"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ensure_model(flashvsr_card(), hub_settings) == hub_settings.models_dir / "test-flashvsr"
    assert hub.total_requests == 0 and hub.log == []


def test_offline_missing_model_names_folder_and_files(hub, hub_settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelMissingError) as caught:
        ensure_model(flashvsr_card(), hub_settings)

    message = str(caught.value)
    assert str(hub_settings.models_dir / "test-flashvsr") in message
    assert all(name in message for name in FLASHVSR_FILES)
    assert hub.log == []


def test_files_placed_by_hand_count_as_ready(hub, hub_settings, flashvsr_repo):
    import shutil

    shutil.copytree(flashvsr_repo, hub_settings.models_dir / "test-flashvsr")
    assert ensure_model(flashvsr_card(), hub_settings) == hub_settings.models_dir / "test-flashvsr"
    assert hub.log == []


def test_hugging_face_cache_copy_is_reused_without_requests(hub, hub_settings):
    from huggingface_hub import constants, snapshot_download

    cached = snapshot_download(TINY_REPO, cache_dir=constants.HF_HUB_CACHE, endpoint=hub.url)
    hub.reset()

    folder = ensure_model(tiny_repo_card(), hub_settings)

    assert folder == Path(cached)
    assert hub.total_requests == 0 and hub.log == []
    assert model_status(tiny_repo_card(), hub_settings).where == "Hugging Face cache"
    assert not (hub_settings.models_dir / "tiny-wan").exists()


def test_incomplete_hugging_face_cache_copy_is_not_trusted(hub, hub_settings):
    from huggingface_hub import constants, snapshot_download

    snapshot_download(
        TINY_REPO, cache_dir=constants.HF_HUB_CACHE, endpoint=hub.url, ignore_patterns=["vae/*.safetensors"]
    )
    hub.reset()

    folder = ensure_model(tiny_repo_card(), hub_settings)

    assert folder == hub_settings.models_dir / "tiny-wan" and (folder / READY_MARKER).is_file()
    assert file_gets(hub)["vae/diffusion_pytorch_model.safetensors"] == 1


def test_second_download_of_the_same_model_waits_and_can_be_cancelled(hub, hub_settings):
    from filelock import FileLock

    folder = hub_settings.models_dir / "test-flashvsr"
    folder.parent.mkdir(parents=True)
    with FileLock(str(folder.parent / ".test-flashvsr.lock")), pytest.raises(JobCancelledError):
        download_model(flashvsr_card(), folder, should_cancel=lambda: True)
    assert hub.log == []
