"""Live previews through the model's tiny decoder (TAEHV, issue 27): used when its file is here or can be
fetched (verified by its git blob hash), the linear projection otherwise; the run's frames never change."""

from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from core.jobs import Job
from core.pipelines import load_diffusers_pipeline
from core.preview import LatentPreview, latent_rgb
from core.preview_decoder import TinyPreviewDecoder, space_stages
from core.settings import Settings
from core.tasks import parse_request
from core.tasks.t2v import generate_t2v
from core.video_io import probe_video
from tests.taehv_weights import save_tiny_taehv
from weights.preview_decoder import PreviewDecoder, load_preview_decoders, preview_decoder
from weights.preview_download import FOLDER, ensure_preview_decoder
from weights.registry import get_card, load_cards
from weights.sources import SourceError

T2V = {"task": "t2v", "model": "tiny-wan", "prompt": "a boat", "width": 64, "height": 64, "frames": 9}


def own_settings(models_dir: Path, tmp_path: Path, offline: bool = True) -> Settings:
    """Settings with a models folder of this test's own that holds the shared tiny Wan."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny-wan").symlink_to(models_dir / "tiny-wan")
    return Settings(outputs_dir=tmp_path / "outputs", models_dir=folder, offline=offline, dev=True)


def git_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def test_wan_cards_name_the_decoder_of_their_latent_space() -> None:
    named = {card.id: card.preview_decoder for card in load_cards().values() if card.preview_decoder}
    assert named["wan2.2-ti2v-5b"] == named["fastwan2.2-ti2v-5b"] == "taew2_2"
    wan21_vae = ("wan2.1-t2v-1.3b", "wan2.2-t2v-a14b", "skyreels-v2-df-1.3b-540p")
    assert {named[i] for i in wan21_vae} == {"taew2_1"}
    assert preview_decoder("taew2_2").latent_channels == 48
    assert preview_decoder("taew2_1").latent_channels == 16
    for facts in load_preview_decoders().values():
        assert not facts.url or facts.url.startswith("https://raw.githubusercontent.com/madebyollin/taehv/")


def test_previews_keep_a_frame_per_latent_within_the_preview_size() -> None:
    assert space_stages(104, 1) == (True, True, False)  # 480p Wan 2.1: 416 pixels
    assert space_stages(160, 1) == (True, True, False)  # 720p: 640
    assert space_stages(80, 2) == (True, True, False)  # Wan 2.2 5B 1280x704: 640
    assert space_stages(8, 1) == (True, True, True)  # the tiny model: 64


def test_preview_goes_through_the_tiny_decoder_and_changes_no_frame(models_dir: Path, tmp_path: Path) -> None:
    settings = own_settings(models_dir, tmp_path)
    card = get_card("tiny-wan")
    save_tiny_taehv(settings.models_dir / FOLDER / "tiny-taehv.pth")
    request = parse_request(T2V | {"steps": 5, "seed": 3})
    shown: list[str] = []
    seen: list[torch.Tensor] = []

    class Watched(Job):
        def show_preview(self, path: str) -> None:
            info = probe_video(Path(path))
            assert (info.frames, info.width, info.height) == (3, 64, 64)
            shown.append(path)

    job = Watched(request)
    preview = LatentPreview.for_run(settings, job, card)
    assert isinstance(preview.decoder, TinyPreviewDecoder)
    step = preview.on_step
    preview.on_step = lambda index, tensors: (seen.append(tensors["latents"].clone()), step(index, tensors))
    pipe = load_diffusers_pipeline(card, settings.models_dir / "tiny-wan", torch.device("cpu"), 0)
    with_preview = generate_t2v(pipe, request, job, preview)
    assert len(shown) == 1 and preview.decoder is not None  # after step 4 of 5, decoded without failing
    tiny = preview.frames(seen[3])
    assert tiny.shape == (3, 64, 64, 3) and not np.array_equal(tiny, latent_rgb(seen[3]))
    assert np.array_equal(with_preview, generate_t2v(pipe, request, job))


def test_without_the_file_offline_previews_stay_linear(models_dir: Path, tmp_path: Path) -> None:
    settings = own_settings(models_dir, tmp_path)
    job = Job(parse_request(T2V | {"steps": 1}))
    assert LatentPreview.for_run(settings, job, get_card("tiny-wan")).decoder is None
    assert LatentPreview.for_run(settings, job, get_card("wan2.1-t2v-1.3b")).decoder is None  # offline


@pytest.fixture
def served(tmp_path: Path):
    """A folder served over HTTP on 127.0.0.1 (HEAD gives Content-Length, as GitHub's raw files do)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_is_verified_by_the_git_blob_hash(served, tmp_path: Path) -> None:
    folder, url = served
    source = save_tiny_taehv(folder / "taew.pth")
    settings = Settings(outputs_dir=tmp_path / "outputs", models_dir=tmp_path / "models", offline=False)
    wrong = PreviewDecoder("bad", "bad.pth", 16, "test", f"{url}/taew.pth", "0" * 40)
    with pytest.raises(SourceError, match="does not match"):
        ensure_preview_decoder(wrong, settings)
    assert not (settings.models_dir / FOLDER / "bad.pth").exists()
    good = PreviewDecoder("good", "good.pth", 16, "test", f"{url}/taew.pth", git_sha1(source))
    path = ensure_preview_decoder(good, settings)
    assert path == settings.models_dir / FOLDER / "good.pth" and path.read_bytes() == source.read_bytes()
    source.unlink()
    assert ensure_preview_decoder(good, settings) == path  # found, not fetched again
    offline = Settings(outputs_dir=tmp_path / "o", models_dir=tmp_path / "empty", offline=True)
    assert ensure_preview_decoder(good, offline) is None
