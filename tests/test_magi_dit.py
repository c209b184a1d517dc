"""MAGI-1 DiT: published config and checkpoint layout, loading, block-causal attention.

The schedule and the chunk generation loop are in ``test_magi_generation.py``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from core.magi.attention import ChunkSlot, ForwardPlan, block_attention, key_block_mask, token_mask
from core.magi.config import MagiDiTConfig, preset
from core.magi.dit import SlotReuse
from core.magi.kv_cache import ChunkKVCache
from core.magi.loading import INDEX, load_magi_dit
from core.magi.window import CallSlot, context_plan
from core.tiny.magi_dit import tiny_config
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_magi"]

PUBLISHED_4_5B_DISTILL = {
    "model_config": {
        "model_name": "videodit_ardf",
        "num_layers": 34,
        "hidden_size": 3072,
        "ffn_hidden_size": 12288,
        "num_attention_heads": 24,
        "num_query_groups": 8,
        "kv_channels": 128,
        "layernorm_epsilon": 1e-06,
        "apply_layernorm_1p": True,
        "x_rescale_factor": 1,
        "half_channel_vae": False,
        "params_dtype": "torch.bfloat16",
        "patch_size": 2,
        "t_patch_size": 1,
        "in_channels": 16,
        "out_channels": 16,
        "cond_hidden_ratio": 0.25,
        "caption_channels": 4096,
        "caption_max_length": 800,
        "xattn_cond_hidden_ratio": 1.0,
        "cond_gating_ratio": 1.0,
        "gated_linear_unit": False,
    },
    "runtime_config": {"cfg_number": 1, "window_size": 4, "chunk_width": 6},
    "engine_config": {"fp8_quant": False, "distill": True},
}


def published_shapes(c: MagiDiTConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the official VideoDiTModel (read from SandAI-org/MAGI-1 dit_module.py)."""
    hidden, cond, head = c.hidden_size, int(c.hidden_size * c.cond_hidden_ratio), c.kv_channels
    q, kv = head * c.num_attention_heads, head * c.num_query_groups
    fc1 = c.ffn_hidden_size * (2 if c.gated_linear_unit else 1)
    shapes = {
        "x_embedder.weight": (hidden, c.in_channels, c.t_patch_size, c.patch_size, c.patch_size),
        "t_embedder.mlp.0.weight": (cond, 256),
        "t_embedder.mlp.0.bias": (cond,),
        "t_embedder.mlp.2.weight": (cond, cond),
        "t_embedder.mlp.2.bias": (cond,),
        "y_embedder.y_proj_xattn.0.weight": (hidden, c.caption_channels),
        "y_embedder.y_proj_xattn.0.bias": (hidden,),
        "y_embedder.y_proj_adaln.0.weight": (cond, c.caption_channels),
        "y_embedder.y_proj_adaln.0.bias": (cond,),
        "y_embedder.null_caption_embedding": (c.caption_max_length, c.caption_channels),
        "rope.bands": (hidden // c.num_attention_heads // 8,),
        "videodit_blocks.final_layernorm.weight": (hidden,),
        "videodit_blocks.final_layernorm.bias": (hidden,),
        "final_linear.linear.weight": (c.patch_size**2 * c.t_patch_size * c.out_channels, hidden),
    }
    for n in range(c.num_layers):
        p = f"videodit_blocks.layers.{n}."
        a = p + "self_attention."
        shapes.update(
            {
                p + "ada_modulate_layer.proj.0.weight": (2 * hidden, cond),
                p + "ada_modulate_layer.proj.0.bias": (2 * hidden,),
                a + "linear_qkv.layer_norm.weight": (hidden,),
                a + "linear_qkv.layer_norm.bias": (hidden,),
                a + "linear_qkv.q.weight": (q, hidden),
                a + "linear_qkv.qx.weight": (q, hidden),
                a + "linear_qkv.k.weight": (kv, hidden),
                a + "linear_qkv.v.weight": (kv, hidden),
                a + "linear_kv_xattn.weight": (2 * kv, hidden),
                a + "linear_proj.weight": (hidden, 2 * q),
                p + "mlp.layer_norm.weight": (hidden,),
                p + "mlp.layer_norm.bias": (hidden,),
                p + "mlp.linear_fc1.weight": (fc1, hidden),
                p + "mlp.linear_fc2.weight": (hidden, c.ffn_hidden_size),
            }
        )
        for norm in ("q_layernorm", "q_layernorm_xattn", "k_layernorm", "k_layernorm_xattn"):
            shapes.update({f"{a}{norm}.weight": (head,), f"{a}{norm}.bias": (head,)})
        for norm in ("self_attn_post_norm", "mlp_post_norm"):
            shapes.update({f"{p}{norm}.weight": (hidden,), f"{p}{norm}.bias": (hidden,)})
    return shapes


def _index(folder, sub="inference_weight.distill"):
    return json.loads((folder / sub / INDEX).read_text())


# ---- config and checkpoint layout ----------------------------------------------------------------------


def test_published_config_json_reads_into_the_4_5b_distill_preset(tmp_path):
    path = tmp_path / "4.5B_distill_config.json"
    path.write_text(json.dumps(PUBLISHED_4_5B_DISTILL))
    assert MagiDiTConfig.from_json(path) == preset("4.5B_distill")
    bad = dict(PUBLISHED_4_5B_DISTILL, model_config={**PUBLISHED_4_5B_DISTILL["model_config"], "hiden": 1})
    with pytest.raises(ConfigError, match="hiden"):
        MagiDiTConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="variant"):
        preset("7B")


def test_tiny_checkpoint_has_the_published_names_and_shapes(magi_folders, distill_dit):
    folder = magi_folders["4.5B_distill"]
    index = _index(folder)
    assert len(set(index["weight_map"].values())) == 2
    config = tiny_config("4.5B_distill")
    expected = published_shapes(config)
    assert set(index["weight_map"]) == set(expected)
    model_shapes = {n: tuple(t.shape) for n, t in distill_dit.state_dict().items()}
    assert model_shapes == expected
    quant = _index(magi_folders["4.5B_distill_quant"], "inference_weight.fp8.distill")["weight_map"]
    assert "videodit_blocks.layers.1.mlp.linear_fc2.smooth_scale" in quant
    assert "videodit_blocks.layers.0.mlp.linear_fc2.smooth_scale" not in quant


def test_loads_straight_to_dtype_with_float32_embedders(magi_folders):
    dit = load_magi_dit(magi_folders["4.5B_distill"], dtype=torch.bfloat16)
    assert dit.videodit_blocks.layers[0].mlp.linear_fc1.weight.dtype == torch.bfloat16
    assert dit.x_embedder.weight.dtype == torch.float32
    assert dit.videodit_blocks.layers[0].self_attention.q_layernorm.weight.dtype == torch.float32
    assert dit.videodit_blocks.layers[0].self_attention.q_layernorm_xattn.weight.dtype == torch.bfloat16
    assert not any(p.is_meta for p in dit.parameters())


def test_fp8_variant_loads_and_upcasts(magi_folders, distill_dit):
    dit = load_magi_dit(magi_folders["4.5B_distill_quant"], dtype=torch.float32)
    inner = dit.videodit_blocks.layers[1].self_attention.linear_proj.weight
    assert inner.dtype == torch.float32 and inner.shape == (64, 128)
    plain = load_magi_dit(magi_folders["4.5B_base"], dtype=torch.float32)
    # same seed, same random values: fp8 rounding keeps them within a few percent
    reference = plain.videodit_blocks.layers[1].self_attention.linear_proj.weight
    assert torch.allclose(inner, reference, atol=0.02, rtol=0.1)


def test_missing_or_unexpected_key_is_a_clear_error(magi_folders, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(magi_folders["4.5B_distill"], broken)
    index = _index(broken)
    index["weight_map"].pop("videodit_blocks.layers.1.mlp.linear_fc1.weight")
    (broken / "inference_weight.distill" / INDEX).write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"missing 1: videodit_blocks\.layers\.1\.mlp\.linear_fc1\.weight"):
        load_magi_dit(broken, dtype=torch.float32)
    extra = tmp_path / "extra"
    shutil.copytree(magi_folders["4.5B_distill"], extra)
    bogus = {"videodit_blocks.layers.9.bogus": torch.zeros(2)}
    save_file(bogus, str(extra / "inference_weight.distill/x.safetensors"))
    index = _index(extra)
    index["weight_map"]["videodit_blocks.layers.9.bogus"] = "x.safetensors"
    (extra / "inference_weight.distill" / INDEX).write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"unexpected 1: videodit_blocks\.layers\.9\.bogus"):
        load_magi_dit(extra, dtype=torch.float32)


# ---- block-causal attention -------------------------------------------------------------------------------


def test_block_causal_mask_never_reaches_a_later_chunk():
    cache = ChunkKVCache(1)
    for chunk in range(3):
        cache.append(chunk, [(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))])
    slots = [CallSlot(c, 0.5, 1, True, reach) for c, reach in zip(range(3, 7), (2, 3, 4, 5), strict=True)]
    plan = context_plan(slots, cache, 6, store_first=False)
    assert plan.cached == (2,)
    blocks = key_block_mask(plan)
    for position in range(len(plan.slots)):
        own = len(plan.cached) + position
        assert blocks[position, own] and not blocks[position, own + 1 :].any()
    assert blocks.sum(dim=1).tolist() == [2, 3, 4, 5]
    tokens = token_mask(plan, slot_tokens=4)
    assert tokens.shape == (16, 20)
    assert not torch.triu(tokens, diagonal=8).any()  # a query never sees a key of a later chunk
    with pytest.raises(ValueError, match="must end at itself"):
        ForwardPlan(slots=(ChunkSlot(0, 0, (0, 2)), ChunkSlot(1, 6, (0, 2))))


def test_per_chunk_attention_equals_one_masked_attention():
    generator = torch.Generator().manual_seed(0)
    plan = ForwardPlan(slots=tuple(ChunkSlot(c, 0, (max(0, c - 2), c + 1)) for c in range(1, 4)), cached=(0,))
    tokens = 5
    query = torch.randn(1, 4, 3 * tokens, 8, generator=generator)
    keys = [torch.randn(1, 2, tokens, 8, generator=generator) for _ in range(4)]
    values = [torch.randn(1, 2, tokens, 8, generator=generator) for _ in range(4)]
    cached = (keys[0], values[0], [tokens])
    out = block_attention(query, keys[1:], values[1:], cached, plan, computed=[0, 1, 2])
    mask = token_mask(plan, tokens)
    k = torch.cat(keys, dim=2).repeat_interleave(2, dim=1)
    v = torch.cat(values, dim=2).repeat_interleave(2, dim=1)
    reference = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=mask)
    assert torch.allclose(out, reference.transpose(1, 2).flatten(2), atol=1e-5)


def _three_slot_call(dit):
    plan = ForwardPlan(slots=tuple(ChunkSlot(c, 6 * c, (max(0, c - 1), c + 1)) for c in range(3)))
    x = torch.randn(1, 16, 18, 4, 4, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([[0.9, 0.5, 0.1]])
    caption, mask = dit.null_caption()
    return x, t, caption, mask, plan


def test_changing_a_later_chunk_leaves_earlier_chunks_unchanged(distill_dit):
    x, t, caption, mask, plan = _three_slot_call(distill_dit)
    before = distill_dit(x, t, caption, mask, plan, shortcut=4.0).velocity
    later = x.clone()
    later[:, :, 12:] += 1.0
    after = distill_dit(later, t, caption, mask, plan, shortcut=4.0).velocity
    assert torch.equal(before[:, :, :12], after[:, :, :12])
    assert not torch.allclose(before[:, :, 12:], after[:, :, 12:])
    earlier = x.clone()
    earlier[:, :, :6] += 1.0
    changed = distill_dit(earlier, t, caption, mask, plan, shortcut=4.0).velocity
    assert not torch.allclose(before[:, :, 6:12], changed[:, :, 6:12])


def test_reused_slots_take_the_hook_output_and_keys_values(distill_dit):
    x, t, caption, mask, plan = _three_slot_call(distill_dit)
    full = distill_dit(x, t, caption, mask, plan, collect_kv=True)
    reuse = {1: SlotReuse(output=full.velocity[:, :, 6:12], kv=full.kv[1])}
    partial = distill_dit(x, t, caption, mask, plan, reuse=reuse)
    assert torch.allclose(partial.velocity, full.velocity, atol=1e-5)
    features = distill_dit.modulated_input(x, t, plan)
    assert len(features) == 3 and features[0].shape == (1, 6 * 2 * 2, 64)
