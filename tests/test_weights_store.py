"""Model states on disk, delete, the ``python -m weights`` CLI and the Models tab wiring."""

from __future__ import annotations

import dataclasses

import pytest
from fake_hub import BIG_FILE, FLASHVSR_FILES, flashvsr_card, tiny_repo_card

from core.model_store import ensure_model as core_ensure_model
from core.validation import ConfigError
from weights.__main__ import main
from weights.download import WORK_DIR, part_path
from weights.registry import get_card
from weights.sources import RemoteFile
from weights.store import delete_model, ensure_model, list_models, model_status

pytest_plugins = ["tests.conftest_weights"]


def test_states_missing_partial_ready_and_delete(hub, hub_settings):
    card = flashvsr_card()
    assert model_status(card, hub_settings).state == "missing"

    partial = part_path(hub_settings.models_dir / card.id, RemoteFile(BIG_FILE, 10, sha256="ab" * 32))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 1000)
    status = model_status(card, hub_settings)
    assert (status.state, status.size_bytes) == ("partial", 1000)

    ensure_model(card, hub_settings)
    status = model_status(card, hub_settings)
    assert status.state == "ready" and status.size_bytes >= sum(FLASHVSR_FILES.values())
    assert not (status.folder / WORK_DIR).exists()  # stale parts go with the work folder

    assert delete_model(card, hub_settings) == status.size_bytes
    assert model_status(card, hub_settings).state == "missing"
    assert delete_model(card, hub_settings) == 0


def test_tiny_wan_card_is_still_built_locally(hub, hub_settings):
    with pytest.raises(ConfigError, match="no builder"):
        ensure_model(get_card("tiny-wan"), hub_settings)  # weights builds nothing of core's by itself
    folder = core_ensure_model(get_card("tiny-wan"), hub_settings)

    assert (folder / ".built").is_file() and (folder / "model_index.json").is_file()
    assert hub.log == []
    assert {s.card_id: s.state for s in list_models(hub_settings, dev=True)}["tiny-wan"] == "ready"
    assert "tiny-wan" not in {s.card_id for s in list_models(hub_settings)}


def test_card_prefer_is_validated():
    with pytest.raises(ConfigError, match="prefer"):
        dataclasses.replace(tiny_repo_card(), prefer="somewhere")


def test_cli_list_and_offline_download(hub, hub_settings, capsys):
    assert main(["list", "--dev", "--models-dir", str(hub_settings.models_dir)]) == 0
    listing = capsys.readouterr().out
    assert "wan2.1-t2v-1.3b" in listing and "missing" in listing and "tiny-wan" in listing

    code = main(["download", "wan2.1-t2v-1.3b", "--offline", "--models-dir", str(hub_settings.models_dir)])
    error = capsys.readouterr().err
    assert code == 1 and "offline" in error and str(hub_settings.models_dir / "wan2.1-t2v-1.3b") in error
    assert hub.log == []


@pytest.mark.e2e
def test_models_tab_events_through_gradio_client(hub, hub_settings, monkeypatch):
    import gradio as gr
    from gradio_client import Client

    from core.facade import ModelDownloads
    from ui.models_tab import build_models_tab
    from weights import registry

    # tiny-wan as a repo on the fake hub (not built locally), so the tab drives a real download
    monkeypatch.setattr(registry, "get_card", lambda model_id: tiny_repo_card())

    with gr.Blocks() as demo, gr.Tab("Models"):
        build_models_tab(ModelDownloads(hub_settings, dev=True))
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        rows = client.predict(api_name="/list_models")["data"]
        assert {r[1]: r[2] for r in rows}["tiny-wan"] == "missing"

        message, table = client.predict("tiny-wan", api_name="/download_model")
        assert "ready" in message and hub.bytes_served["vae/diffusion_pytorch_model.safetensors"] > 0
        assert {r[1]: r[2] for r in table["data"]}["tiny-wan"] == "ready"

        message, table = client.predict("tiny-wan", api_name="/delete_model")
        assert message.startswith("Deleted") and {r[1]: r[2] for r in table["data"]}["tiny-wan"] == "missing"
    finally:
        demo.close()
