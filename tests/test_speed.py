"""Speed options on the tiny Wan model (CPU): every option toggles, defaults are lossless, bad values fail."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from core.speed import (
    ATTENTION_CHOICES,
    COMPILE_STAGE,
    SpeedConfig,
    apply_speed,
    parse_speed_config,
    pick_attention_backend,
)
from core.speed.attention import use_attention_backend
from core.speed.flash4 import flash4_attention, install_flash4
from core.speed.fp8 import is_block_linear
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_speed"]

CPU = torch.device("cpu")


def forward(pipe, inputs) -> torch.Tensor:
    with torch.no_grad():
        return pipe.transformer(**inputs, return_dict=False)[0]


def sdpa_bshd(q, k, v, softmax_scale=None, causal=False):
    """A stand-in for FA4's ``flash_attn_func`` on the CPU: same layout (B,S,H,D), returns (out, lse)."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=softmax_scale, is_causal=causal
    )
    return out.transpose(1, 2).contiguous(), None


def test_defaults_give_plain_diffusers_output(load_pipe, dit_inputs):
    plain = forward(load_pipe(), dit_inputs)
    pipe = load_pipe()
    record = apply_speed(pipe, SpeedConfig(), CPU)
    assert record["lossless"] is True
    assert torch.equal(forward(pipe, dit_inputs), plain)


def test_default_pipeline_video_is_unchanged(load_pipe):
    args = dict(prompt="a cat", height=16, width=16, num_frames=5, num_inference_steps=2, output_type="np")
    plain = load_pipe()(**args, generator=torch.Generator().manual_seed(1)).frames[0]
    pipe = load_pipe()
    apply_speed(pipe, SpeedConfig(), CPU)
    assert (pipe(**args, generator=torch.Generator().manual_seed(1)).frames[0] == plain).all()


def test_chosen_backend_is_reported_on_cpu(load_pipe):
    choice = pick_attention_backend(CPU)
    assert choice.name == "sdpa" and choice.backend == "native" and "cpu" in choice.reason
    record = apply_speed(load_pipe(), SpeedConfig(), CPU)
    assert record["attention"] == {"on": "sdpa", "backend": "native", "reason": choice.reason}
    assert record["compile"]["on"] is False and "off on cpu" in record["compile"]["reason"]


@pytest.mark.parametrize("name", [n for n in ATTENTION_CHOICES if n not in ("auto", "sdpa")])
def test_gpu_backends_fall_back_on_cpu_with_reason(load_pipe, dit_inputs, name):
    pipe = load_pipe()
    record = apply_speed(pipe, SpeedConfig(attention=name), CPU)
    assert record["attention"]["on"] == "sdpa"
    assert f"{name} asked but unavailable: {name} needs a CUDA GPU" in record["attention"]["reason"]
    assert forward(pipe, dit_inputs).shape == dit_inputs["hidden_states"].shape


def test_fp8_linears_report_off_on_cpu(load_pipe, dit_inputs):
    pipe = load_pipe()
    record = apply_speed(pipe, SpeedConfig(fp8_linears=True), CPU)
    assert record["fp8_linears"] == {"on": False, "reason": "fp8 linears need a CUDA GPU (running on cpu)"}
    assert record["lossless"] is True
    assert forward(pipe, dit_inputs).shape == dit_inputs["hidden_states"].shape


def test_turbo_reports_each_part_off_on_cpu(load_pipe, dit_inputs):
    plain = forward(load_pipe(), dit_inputs)
    pipe = load_pipe()
    record = apply_speed(pipe, SpeedConfig(turbo=True), CPU)
    assert record["turbo"] is True
    assert record["fp8_linears"]["on"] is False and "CUDA GPU" in record["fp8_linears"]["reason"]
    assert record["fp8_attention"] == {"on": False, "reason": "fp8 needs a CUDA GPU (running on cpu)"}
    assert torch.equal(forward(pipe, dit_inputs), plain)


def test_second_apply_keeps_the_first_record(load_pipe):
    pipe = load_pipe()
    first = apply_speed(pipe, SpeedConfig(), CPU)
    assert apply_speed(pipe, SpeedConfig(attention="cudnn"), CPU) is first


@pytest.mark.parametrize(
    "data",
    [
        {"attention": "fa5"},
        {"compile": "yes"},
        {"compile": 1},
        {"fp8_linears": "true"},
        {"turbo": None},
        {"speedy": True},
    ],
)
def test_bad_values_raise_config_error(data):
    with pytest.raises(ConfigError, match="speed"):
        parse_speed_config(data)


def test_parse_accepts_every_valid_value():
    for attention in ATTENTION_CHOICES:
        for compile_setting in (True, False, "auto"):
            config = parse_speed_config({"attention": attention, "compile": compile_setting, "turbo": True})
            assert config.attention == attention and config.compile == compile_setting
    assert parse_speed_config(None) == SpeedConfig()


def test_flash4_backend_runs_through_diffusers_dispatch(load_pipe, dit_inputs):
    plain = forward(load_pipe(), dit_inputs)
    pipe = load_pipe()
    install_flash4(kernel=sdpa_bshd)
    use_attention_backend(pipe.transformer, "flash4")
    backends = {
        m.processor._attention_backend.value for m in pipe.transformer.modules() if hasattr(m, "processor")
    }
    assert backends == {"flash_4_hub"}
    torch.testing.assert_close(forward(pipe, dit_inputs), plain, rtol=1e-5, atol=1e-5)


def test_flash4_custom_op_compiles_without_graph_breaks(load_pipe, dit_inputs):
    install_flash4(kernel=sdpa_bshd)
    q, k, v = (torch.randn(2, 24, 2, 16) for _ in range(3))
    compiled = torch.compile(
        lambda q, k, v: flash4_attention(q, k, v) * 2, fullgraph=True, backend="aot_eager"
    )
    torch.testing.assert_close(compiled(q, k, v), sdpa_bshd(q, k, v)[0] * 2)

    pipe = load_pipe()
    eager = forward(pipe, dit_inputs)
    use_attention_backend(pipe.transformer, "flash4")
    pipe.transformer.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(forward(pipe, dit_inputs), eager, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_fp8_picks_the_block_linears(load_pipe):
    transformer = load_pipe().transformer
    chosen = [name for name, module in transformer.named_modules() if is_block_linear(module, name)]
    assert len(chosen) == 10 * transformer.config.num_layers  # q, k, v, out of two attentions + 2 FFN
    assert all(name.startswith("blocks.") for name in chosen)


def test_regional_compile_runs_on_cpu(load_pipe, dit_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    plain = forward(load_pipe(), dit_inputs)
    pipe = load_pipe()
    stages: list[str] = []
    started = time.monotonic()
    record = apply_speed(pipe, SpeedConfig(compile=True), CPU, models_dir=tmp_path, report=stages.append)
    assert record["compile"]["on"] is True and str(tmp_path / "inductor") in record["compile"]["reason"]
    assert record["compile"]["blocks"] == pipe.transformer.config.num_layers
    out = forward(pipe, dit_inputs)
    torch._dynamo.reset()
    if time.monotonic() - started > 60:
        pytest.skip("regional compile of tiny-wan took over 60 s on this CPU")
    assert stages == [COMPILE_STAGE]
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-4)


def test_speed_controls_build_and_map_to_a_valid_config():
    from core.facade.encode import speed_options as speed_dict_from_controls
    from core.facade.inputs import t2v_inputs
    from weights.registry import get_card

    inputs = t2v_inputs([get_card("tiny-wan")], several_gpus=False)
    values = [inputs[name]["value"] for name in ("attention", "compile_choice", "turbo")]
    assert values == ["auto", "auto", False]
    assert parse_speed_config(speed_dict_from_controls("flash4", "off", True)) == SpeedConfig(
        attention="flash4", compile=False, turbo=True
    )
    with pytest.raises(ConfigError):
        parse_speed_config(speed_dict_from_controls("auto", "sometimes", False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_default_stays_close_to_plain(tiny_wan_dir, dit_inputs):
    from diffusers import WanTransformer3DModel

    cuda = torch.device("cuda")
    inputs = {
        k: v.to(cuda, torch.bfloat16 if v.is_floating_point() else v.dtype) for k, v in dit_inputs.items()
    }

    def load():
        model = WanTransformer3DModel.from_pretrained(
            tiny_wan_dir, subfolder="transformer", dtype=torch.bfloat16
        )
        return model.to(cuda)

    plain = forward(type("Pipe", (), {"transformer": load()}), inputs)
    pipe = type("Pipe", (), {"transformer": load()})
    record = apply_speed(pipe, SpeedConfig(), cuda)
    assert record["attention"]["on"] == pick_attention_backend(cuda).name and record["compile"]["on"] is True
    torch.testing.assert_close(forward(pipe, inputs), plain, rtol=0.05, atol=0.05)
    torch._dynamo.reset()


def test_fp8_is_refused_next_to_memory_level_weight_hooks(load_pipe, monkeypatch):
    import core.speed.apply as apply_module

    monkeypatch.setattr(apply_module, "fp8_unavailable", lambda device: None)  # as on an fp8-capable GPU
    pipe = load_pipe()
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert "layerwise_casting" in apply_module.hook_names(pipe.transformer)
    record = apply_speed(pipe, SpeedConfig(fp8_linears=True, compile=False), CPU)
    assert record["fp8_linears"] == {
        "on": False,
        "reason": "the memory level's hooks (layerwise_casting) already manage the weights",
    }


def test_step_profile_groups_kernels_and_adds_up():
    """bench/step_profile.py: kernel names land in the right group; on the CPU it profiles op times."""
    from bench.step_profile import group_of, profile_forward

    assert group_of("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64") == "gemm"
    assert group_of("triton_tem_fused_addmm_gelu_1") == "gemm"
    assert group_of("triton_poi_fused_add_mul_native_layer_norm_0") == "fused elementwise"
    assert group_of("flash_fwd_kernel") == group_of("_fp8_attention_fwd") == "attention"
    result = profile_forward("tiny", "plain", batch=1, warmup=0)
    assert result["busy_ms"] == pytest.approx(sum(result["groups_ms"].values()))
    assert result["groups_ms"]["gemm"] > 0 and result["groups_ms"]["attention"] > 0


def test_gelu_epilogue_swaps_each_ffn_activation_keeping_weights_and_output(load_pipe, dit_inputs):
    from core.speed.gelu_epilogue import LinearGELU, fuse_gelu_epilogues

    transformer = load_pipe().transformer
    plain = forward(type("Pipe", (), {"transformer": transformer}), dit_inputs)
    keys = set(transformer.state_dict())
    assert fuse_gelu_epilogues(transformer) == transformer.config.num_layers
    assert all(isinstance(block.ffn.net[0], LinearGELU) for block in transformer.blocks)
    assert set(transformer.state_dict()) == keys  # real checkpoints still load
    pipe = type("Pipe", (), {"transformer": transformer})
    assert torch.equal(forward(pipe, dit_inputs), plain)  # the CPU path is diffusers' own two steps
    transformer.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(forward(pipe, dit_inputs), plain, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_gelu_epilogue_reports_off_on_cpu_and_when_asked(load_pipe):
    record = apply_speed(load_pipe(), SpeedConfig(), CPU)
    assert record["gelu_epilogue"] == {
        "on": False,
        "reason": "the fused GEMM epilogue is cuBLASLt's (running on cpu)",
    }
    record = apply_speed(load_pipe(), SpeedConfig(gelu_epilogue=False), CPU)
    assert record["gelu_epilogue"] == {"on": False, "reason": "turned off"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_gelu_epilogue_matches_linear_then_tanh_gelu():
    from core.speed.gelu_epilogue import linear_gelu_tanh

    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (
        torch.randn(*shape, generator=generator) for shape in ((2, 300, 256), (1024, 256), (1024,))
    )
    x, weight, bias = (t.to("cuda", torch.bfloat16) for t in (x, weight * 0.05, bias))
    expected = F.gelu(F.linear(x.float(), weight.float(), bias.float()), approximate="tanh")
    out = linear_gelu_tanh(x, weight, bias)
    assert out.shape == expected.shape and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.02)
    compiled = torch.compile(lambda x: linear_gelu_tanh(x, weight, bias) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(x), out * 2)
    torch._dynamo.reset()


def test_gelu_epilogue_leaves_wide_ffns_alone(load_pipe):
    from core.speed.gelu_epilogue import fuse_gelu_epilogues

    transformer = load_pipe().transformer
    width = transformer.blocks[0].ffn.net[0].proj.in_features
    assert fuse_gelu_epilogues(transformer, max_in_features=width - 1) == 0
    assert fuse_gelu_epilogues(transformer, max_in_features=width) == transformer.config.num_layers
