"""MAGI-1 VAE: official weight names and layout, strict loading, frame convention, tiling; the MAGI cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.magi.vae import PUBLISHED_DDCONFIG, MagiVAE, TileConfig, blend
from core.magi.vae_blocks import ViTConfig
from core.validation import ConfigError
from weights.registry import cards_for, load_cards, parse_card
from weights.sources import select

pytest_plugins = ["tests.conftest_magi_vae"]

PUBLISHED_FILES = [
    ".gitattributes",
    "README.md",
    *(
        f"ckpt/magi/{variant}/{sub}/{name}"
        for variant, sub, shards in (
            ("4.5B_base", "inference_weight", 2),
            ("4.5B_distill", "inference_weight.distill", 2),
            ("4.5B_distill_quant", "inference_weight.fp8.distill", 1),
            ("24B_base", "inference_weight", 10),
            ("24B_distill", "inference_weight.distill", 10),
            ("24B_distill_quant", "inference_weight.fp8.distill", 6),
        )
        for name in (
            "model.safetensors.index.json",
            *(f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)),
        )
    ),
    "ckpt/magi1.1/24B_base/inference_weight/model.safetensors.index.json",
    "ckpt/t5/t5-v1_1-xxl/config.json",
    "ckpt/t5/t5-v1_1-xxl/special_tokens_map.json",
    "ckpt/t5/t5-v1_1-xxl/spiece.model",
    "ckpt/t5/t5-v1_1-xxl/tokenizer_config.json",
    "ckpt/t5/t5-v1_1-xxl/pytorch_model.bin.index.json",
    "ckpt/t5/t5-v1_1-xxl/pytorch_model-00001-of-00002.bin",
    "ckpt/t5/t5-v1_1-xxl/pytorch_model-00002-of-00002.bin",
    "ckpt/vae/config.json",
    "ckpt/vae/diffusion_pytorch_model.safetensors",
]
"""The sand-ai/MAGI-1 layout: folder and file names as the official loaders read them; the shard counts
of the DiT folders are illustrative."""

OFFICIAL_BLOCK_KEYS = [
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
]
OFFICIAL_KEYS = {
    *(f"{part}.{name}" for part in ("encoder", "decoder") for name in ("cls_token", "pos_embed")),
    *(
        f"{part}.{layer}.{p}"
        for part in ("encoder", "decoder")
        for layer in ("norm", "last_layer")
        for p in ("weight", "bias")
    ),
    "encoder.patch_embed.proj.weight",
    "encoder.patch_embed.proj.bias",
    "decoder.proj_in.weight",
    "decoder.proj_in.bias",
    *(
        f"{part}.blocks.{i}.{key}"
        for part in ("encoder", "decoder")
        for i in range(24)
        for key in OFFICIAL_BLOCK_KEYS
    ),
}
"""The parameter names of the official ``ViTVAE`` (vae_module.py) for the published config."""


def test_published_config_has_the_official_names_and_shapes() -> None:
    with torch.device("meta"):
        vae = MagiVAE(ViTConfig(**PUBLISHED_DDCONFIG))
    shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert set(shapes) == OFFICIAL_KEYS
    assert shapes["encoder.patch_embed.proj.weight"] == (1024, 3, 4, 8, 8)
    assert shapes["encoder.pos_embed"] == shapes["decoder.pos_embed"] == (1, 4 * 32 * 32 + 1, 1024)
    assert shapes["encoder.last_layer.weight"] == (32, 1024)
    assert shapes["decoder.proj_in.weight"] == (1024, 16)
    assert shapes["decoder.last_layer.weight"] == (3, 4, 3, 3, 3)
    assert shapes["encoder.blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert (vae.temporal_factor, vae.spatial_factor, vae.latent_channels) == (4, 8, 16)


def test_tiny_parts_are_in_the_published_layout(magi_parts: Path) -> None:
    built = {p.relative_to(magi_parts).as_posix() for p in magi_parts.rglob("*") if p.is_file()}
    published_parts = {f for f in PUBLISHED_FILES if f.startswith(("ckpt/vae/", "ckpt/t5/"))}
    assert built == published_parts | {"special_tokens.npz"}
    config = json.loads((magi_parts / "ckpt/vae/config.json").read_text())
    assert config["_class_name"] == "ViTVAE" and config["model_type"] == "vit"
    assert set(config["ddconfig"]) == set(PUBLISHED_DDCONFIG)


def test_loads_from_root_or_vae_folder(magi_parts: Path) -> None:
    a = MagiVAE.from_pretrained(magi_parts, "cpu", torch.float32)
    b = MagiVAE.from_pretrained(magi_parts / "ckpt/vae", "cpu", torch.bfloat16)
    assert b.dtype == torch.bfloat16 and not any(p.requires_grad for p in b.parameters())
    for key, value in a.state_dict().items():
        assert torch.equal(value.to(torch.bfloat16), b.state_dict()[key])
    with pytest.raises(ConfigError, match="no MAGI VAE"):
        MagiVAE.from_pretrained(magi_parts / "ckpt", "cpu", torch.float32)


def test_strict_loading_names_missing_unexpected_and_misshaped_keys(magi_parts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    shutil.copytree(magi_parts / "ckpt/vae", folder)
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    state.pop("decoder.proj_in.bias")
    state["encoder.extra.weight"] = torch.zeros(2)
    state["encoder.last_layer.weight"] = torch.zeros(8, 256)
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ConfigError) as error:
        MagiVAE.from_pretrained(folder, "cpu", torch.float32)
    message = str(error.value)
    assert "1 missing (e.g. decoder.proj_in.bias)" in message
    assert "1 unexpected (e.g. encoder.extra.weight)" in message
    assert "encoder.last_layer.weight (8, 256) != (32, 256)" in message


def test_config_refuses_unknown_and_unsupported_settings(magi_parts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    shutil.copytree(magi_parts / "ckpt/vae", folder)
    config = json.loads((folder / "config.json").read_text())
    for change, pattern in (({"use_rope": True}, "unsupported"), ({"spin": 1}, "unknown field")):
        bad = config | {"ddconfig": config["ddconfig"] | change}
        (folder / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=pattern):
            MagiVAE.from_pretrained(folder, "cpu", torch.float32)


def test_4k_frames_encode_to_k_latents_and_decode_back(magi_vae: MagiVAE) -> None:
    torch.manual_seed(0)
    video = torch.rand(1, 3, 8, 32, 48) * 2 - 1
    latents = magi_vae.encode(video, tiled=False)
    assert latents.shape == (1, 16, 2, 4, 6)
    assert magi_vae.decode(latents, tiled=False).shape == (1, 3, 8, 32, 48)
    image = magi_vae.encode(video[:, :, :1], tiled=False)
    assert image.shape == (1, 16, 1, 4, 6)
    assert magi_vae.decode(image, tiled=False).shape == (1, 3, 1, 32, 48)
    assert [magi_vae.latent_frames(n) for n in (1, 4, 8, 96)] == [1, 1, 2, 24]
    for frames in (5, 9):
        with pytest.raises(ValueError, match="1 or 4k frames"):
            magi_vae.encode(video[:, :, :1].expand(-1, -1, frames, -1, -1))
    with pytest.raises(ValueError, match="multiples of 8"):
        magi_vae.encode(video[..., :30, :])


def test_latents_are_scaled_for_the_dit(magi_vae: MagiVAE) -> None:
    video = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    raw = magi_vae.encode(video, scaled=False)
    torch.testing.assert_close(magi_vae.encode(video), raw * 0.18215)
    torch.testing.assert_close(magi_vae.decode(raw * 0.18215), magi_vae.decode(raw, scaled=False))


def test_tiling_is_exact_for_one_tile_and_keeps_shapes_for_many(magi_vae: MagiVAE) -> None:
    torch.manual_seed(1)
    video = torch.rand(1, 3, 8, 40, 56) * 2 - 1
    whole = magi_vae.encode(video, tiled=False)
    torch.testing.assert_close(magi_vae.encode(video), whole)
    torch.testing.assert_close(magi_vae.decode(whole), magi_vae.decode(whole, tiled=False))
    tiles = TileConfig(height=32, width=32, frames=4)
    tiled = magi_vae.encode(video, tiles=tiles)
    assert tiled.shape == whole.shape == (1, 16, 2, 5, 7)
    corner = magi_vae.encode(video[:, :, :4, :32, :32], tiled=False)
    torch.testing.assert_close(tiled[:, :, :1, :3, :3], corner[:, :, :, :3, :3])
    assert not torch.allclose(tiled, whole)
    assert magi_vae.decode(tiled, tiles=tiles).shape == video.shape
    assert magi_vae.decode(tiled[:, :, :1], tiles=tiles).shape == (1, 3, 1, 40, 56)
    with pytest.raises(ConfigError, match="multiple of 4"):
        magi_vae.encode(video, tiles=TileConfig(frames=6))


def test_blend_cross_fades_linearly() -> None:
    previous = torch.full((1, 1, 4), 10.0)
    current = torch.zeros(1, 1, 4)
    assert blend(previous, current, 4, dim=2).tolist() == [[[10.0, 7.5, 5.0, 2.5]]]


def test_magi_cards_validate_and_serve_both_tabs() -> None:
    cards = load_cards()
    magi = {k: v for k, v in cards.items() if k.startswith("magi-1-")}
    variants = ("4.5b-distill", "4.5b-base", "4.5b-distill-quant", "24b-distill")
    assert set(magi) == {f"magi-1-{v}" for v in variants}
    for card in [*magi.values(), cards["tiny-magi"]]:
        assert card.serves("t2v") and card.serves("continue") and not card.serves("upscale")
        assert card.fps == 24 and card.extra["chunk_frames"] == 24
        for task in ("t2v", "continue"):
            assert card.id in {c.id for c in cards_for(task, dev=True)}
    assert magi["magi-1-4.5b-distill"].defaults.resolution == "720x720"
    base, big = magi["magi-1-4.5b-base"], magi["magi-1-24b-distill"]
    assert base.extra["cfg_number"] == 3 and base.defaults.guidance == 7.5
    assert big.defaults.steps == 16 and "MULTI-GPU" in big.description and big.extra["gpus"] == 8
    assert cards["tiny-magi"].dev and cards["tiny-magi"].builder == "tiny-magi"


def test_magi_cards_list_after_the_existing_defaults_with_the_4_5b_distill_first() -> None:
    for task in ("t2v", "continue"):
        listed = [c.id for c in cards_for(task)]
        assert not listed[0].startswith("magi-")
        assert next(i for i in listed if i.startswith("magi-")) == "magi-1-4.5b-distill"


@pytest.mark.parametrize(
    ("card_id", "dit_folder"),
    [
        ("magi-1-4.5b-distill", "ckpt/magi/4.5B_distill/inference_weight.distill/"),
        ("magi-1-4.5b-base", "ckpt/magi/4.5B_base/inference_weight/"),
        ("magi-1-4.5b-distill-quant", "ckpt/magi/4.5B_distill_quant/inference_weight.fp8.distill/"),
        ("magi-1-24b-distill", "ckpt/magi/24B_distill/inference_weight.distill/"),
    ],
)
def test_allow_patterns_fetch_only_the_variant_vae_and_t5(card_id: str, dit_folder: str) -> None:
    card = load_cards()[card_id]
    chosen = set(select(PUBLISHED_FILES, card.allow_patterns, key=lambda name: name))
    expected = {f for f in PUBLISHED_FILES if f.startswith((dit_folder, "ckpt/vae/", "ckpt/t5/"))}
    assert chosen == expected
    assert any(f.endswith("model.safetensors.index.json") for f in chosen)
    assert card.extra["dit_subfolder"] + "/" == dit_folder


def test_card_tasks_are_validated() -> None:
    data = {
        "id": "x",
        "name": "X",
        "task": "t2v",
        "tasks": ["continue", "paint"],
        "pipeline": "P",
        "description": "",
        "fps": 24,
        "size_multiple": 16,
        "max_frames": 97,
        "builder": "b",
        "defaults": {"resolution": "r", "frames": 97, "steps": 4, "guidance": 1.0},
        "resolutions": [{"name": "r", "width": 64, "height": 64}],
        "arch": {
            "heads": 2,
            "head_dim": 8,
            "layers": 1,
            "ffn_dim": 8,
            "patch": [1, 2, 2],
            "vae_stride": [4, 8, 8],
        },
    }
    with pytest.raises(ConfigError, match="tasks"):
        parse_card(data, where="x.yaml")
    assert parse_card(data | {"tasks": ["continue"]}, where="x.yaml").serves("continue")
    assert not parse_card(data | {"tasks": []}, where="x.yaml").serves("continue")
