"""The loras folder in the app: listing, a download by Hub file or URL, adding a picked file to the box."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lora_files import tiny_lora, write_lora
from safetensors.torch import save_file

from core.facade.lora_files import LoraFiles, add_to_box, parse_source
from core.settings import Settings
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_weights"]


def test_sources_people_paste() -> None:
    hub = parse_source("test-org/tiny-lora/loras/style.safetensors")
    assert (hub.repo, hub.name, hub.file_name) == (
        "test-org/tiny-lora",
        "loras/style.safetensors",
        "loras__style.safetensors",
    )
    page = parse_source(
        "https://huggingface.co/test-org/tiny-lora/blob/main/loras/style.safetensors", " ABC "
    )
    assert (page.repo, page.name, page.sha256) == ("test-org/tiny-lora", "loras/style.safetensors", "abc")
    url = parse_source("https://example.com/files/anime.safetensors?download=1")
    assert (url.url, url.name, url.repo) == (
        "https://example.com/files/anime.safetensors?download=1",
        "anime.safetensors",
        None,
    )
    for bad, says in [
        ("", "Give the LoRA"),
        ("org/repo", "names no file"),
        ("org/repo/model.ckpt", ".safetensors"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_source(bad)


def test_a_picked_file_is_added_once_at_strength_one() -> None:
    assert add_to_box("", "style.safetensors") == "style.safetensors:1"
    assert add_to_box("a.safetensors:0.5", "style.safetensors") == "a.safetensors:0.5, style.safetensors:1"
    assert add_to_box("style.safetensors:0.7", "style.safetensors") == "style.safetensors:0.7"
    assert add_to_box("a.safetensors:0.5", None) == "a.safetensors:0.5"


def test_rows_list_the_folder_with_sizes_and_hashes(tmp_path: Path) -> None:
    loras = LoraFiles(Settings(loras_dir=tmp_path / "loras", offline=True))
    assert loras.rows() == [] and not loras.can_download
    write_lora(tmp_path / "loras", "style.safetensors", tiny_lora("diffusers"))
    write_lora(tmp_path / "loras" / "wan22", "high.safetensors", tiny_lora("comfyui"))
    rows = loras.rows()
    assert [r[0] for r in rows] == ["style.safetensors", "wan22/high.safetensors"]
    assert all(len(r[2]) == 12 for r in rows) and rows[0][1].endswith("KB")
    with pytest.raises(ConfigError, match="offline"):
        loras.download("test-org/x/y.safetensors", None, lambda p: None)


def test_download_from_the_hub_and_refuse_what_is_no_lora(hub, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_lora(repo / "loras", "style.safetensors", tiny_lora("comfyui"))
    save_file({"blocks.0.attn1.to_q.weight": torch.zeros(4, 4)}, str(repo / "model.safetensors"))
    hub.add_repo("test-org/tiny-lora", repo)
    loras = LoraFiles(Settings(loras_dir=tmp_path / "loras"))
    seen = []
    message = loras.download("test-org/tiny-lora/loras/style.safetensors", "", seen.append)
    assert "loras__style.safetensors:1" in message and seen
    assert loras.choices() == ["loras__style.safetensors"]
    with pytest.raises(ConfigError, match="full model, not a LoRA"):
        loras.download("test-org/tiny-lora/model.safetensors", None, seen.append)
    assert loras.choices() == ["loras__style.safetensors"]  # the refused file was removed


@pytest.mark.e2e
def test_loras_section_through_gradio_client(hub, tmp_path: Path) -> None:
    import gradio as gr
    from gradio_client import Client

    from ui.loras_section import build_loras_section

    repo = tmp_path / "repo"
    write_lora(repo, "anime.safetensors", tiny_lora("lightx2v"))
    hub.add_repo("test-org/anime-lora", repo)
    with gr.Blocks() as demo, gr.Tab("Models"):
        build_loras_section(LoraFiles(Settings(loras_dir=tmp_path / "loras")))
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        assert client.predict(api_name="/list_loras")["data"] == []
        message, table = client.predict(
            "https://huggingface.co/test-org/anime-lora/resolve/main/anime.safetensors",
            "",
            api_name="/download_lora",
        )
        assert message.startswith("Downloaded anime.safetensors")
        assert [row[0] for row in table["data"]] == ["anime.safetensors"]
        with pytest.raises(Exception, match="names no file"):
            client.predict("test-org/anime-lora", "", api_name="/download_lora")
    finally:
        demo.close()
