"""8-bit attention: quantization maths on the CPU (reference path), Turbo's routing through diffusers'
dispatcher, the custom op under torch.compile, and (GPU only) the Triton kernel against both references."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import core.speed.fp8_attention as glue
from core.kernels.fp8_attention import (
    FP8,
    INT8_MAX,
    KEY_SCALE_BLOCK,
    LOG2E,
    SEQ_ALIGN,
    fp8_attention,
    fp8_attention_quantized,
    fp8_attention_reference,
    fp8_attention_unavailable,
    quantize_for_fp8_attention,
)
from core.speed import SpeedConfig, apply_speed
from core.speed.attention import backend_unavailable, pick_turbo_attention, use_attention_backend

pytest_plugins = ["tests.conftest_speed"]
pytestmark = pytest.mark.usefixtures("restore_backend_slot")

CPU = torch.device("cpu")
NO_CUDA = not torch.cuda.is_available()
ROOT = Path(__file__).resolve().parents[1]


def exact_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """float32 SDPA on (B, S, H, D) tensors."""
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def qkv(batch: int, seq: int, heads: int, dim: int, offset: float = 0.0, seed: int = 0):
    """Random normal q, k, v; ``offset`` adds a per-channel shift to q and k, like real activations."""
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, seq, heads, dim, generator=generator) for _ in range(3))
    shift = offset * torch.randn(dim, generator=generator)
    return q + shift, k + 2 * shift, v


@pytest.mark.parametrize("offset", [0.0, 2.0])
@pytest.mark.parametrize("seq", [300, 1000])
def test_reference_is_close_to_exact_attention(seq, offset):
    q, k, v = qkv(2, seq, 2, 128, offset)
    out = fp8_attention_reference(q, k, v)
    exact = exact_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert cosine(out, exact) > 0.999
    assert (out - exact).abs().max() < 0.06 * exact.abs().max()  # measured: 0.03-0.04 of the peak


def test_smoothing_makes_a_large_key_offset_harmless():
    q, k, v = qkv(1, 500, 2, 64)
    k_offset = k + 50 * torch.randn(64, generator=torch.Generator().manual_seed(3))
    exact = exact_attention(q, k_offset, v)
    torch.testing.assert_close(exact, exact_attention(q, k, v), rtol=1e-4, atol=1e-4)  # softmax invariance
    assert cosine(fp8_attention_reference(q, k_offset, v), exact) > 0.999


def test_quantization_shapes_dtypes_and_scales():
    batch, seq, heads, dim = 2, 200, 3, 64
    q, k, v = qkv(batch, seq, heads, dim, offset=1.0)
    inputs = quantize_for_fp8_attention(q, k, v, scale=0.1)
    blocks = -(-seq // KEY_SCALE_BLOCK)
    padded = -(-seq // SEQ_ALIGN) * SEQ_ALIGN
    assert inputs.q.shape == inputs.k.shape == (batch, seq, heads, dim)
    assert inputs.q.dtype == inputs.k.dtype == torch.int8
    assert inputs.v_t.shape == (batch, heads, dim, padded) and inputs.v_t.dtype == FP8
    assert inputs.q_scale.shape == (batch, seq, heads) and inputs.k_scale.shape == (batch, blocks, heads)
    assert inputs.v_scale.shape == (batch, heads, dim)
    assert all(t.dtype == torch.float32 for t in (inputs.q_scale, inputs.k_scale, inputs.v_scale))
    assert (inputs.v_t[..., seq:].float() == 0).all()
    assert inputs.q.abs().amax(dim=-1).eq(127).all()  # every token uses the full int8 range

    q_back = inputs.q.float() * inputs.q_scale.unsqueeze(-1) / (0.1 * LOG2E)
    step = inputs.q_scale.unsqueeze(-1) / (0.1 * LOG2E)
    assert ((q_back - q).abs() <= step / 2 + 1e-6).all()
    smooth = k - k.mean(dim=1, keepdim=True)
    k_scale = inputs.k_scale.repeat_interleave(KEY_SCALE_BLOCK, dim=1)[:, :seq].unsqueeze(-1)
    assert ((inputs.k.float() * k_scale - smooth).abs() <= k_scale / 2 + 1e-6).all()
    first_block = smooth[:, :KEY_SCALE_BLOCK].abs().amax((1, 3)) / INT8_MAX
    torch.testing.assert_close(inputs.k_scale[:, 0], first_block)
    v_back = inputs.v_t[..., :seq].float().permute(0, 3, 1, 2) * inputs.v_scale.unsqueeze(1)
    subnormal_step = inputs.v_scale.unsqueeze(1) * 2.0**-9  # e4m3: 3 mantissa bits, subnormals below 2**-6
    assert ((v_back - v).abs() <= v.abs() / 16 + subnormal_step / 2 + 1e-6).all()


def test_availability_reasons_on_cpu():
    assert fp8_attention_unavailable(CPU) == "8-bit attention needs a CUDA GPU (running on cpu)"
    assert backend_unavailable("fp8", CPU) == "fp8 needs a CUDA GPU (running on cpu)"
    assert pick_turbo_attention(CPU) == (None, "fp8 needs a CUDA GPU (running on cpu)")


def test_turbo_on_cpu_reports_fp8_attention_off(load_pipe):
    record = apply_speed(load_pipe(), SpeedConfig(turbo=True), CPU)
    assert record["fp8_attention"] == {"on": False, "reason": "fp8 needs a CUDA GPU (running on cpu)"}
    assert record["attention"]["on"] == "sdpa" and record["lossless"] is True


def test_custom_op_fake_shape_and_fullgraph_compile():
    from torch._subclasses.fake_tensor import FakeTensorMode

    q, k, v = (t.to(torch.bfloat16) for t in qkv(1, 40, 2, 64))
    inputs = quantize_for_fp8_attention(q, k, v)
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = fp8_attention_quantized(*inputs, torch.bfloat16)
    assert fake.shape == q.shape and fake.dtype == torch.bfloat16
    compiled = torch.compile(lambda q, k, v: fp8_attention(q, k, v) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(q, k, v), fp8_attention(q, k, v) * 2)
    torch._dynamo.reset()


def test_backend_sends_short_keys_to_sdpa_and_refuses_lse():
    calls: list[int] = []
    glue.install_fp8_attention(kernel=lambda q, k, v, s: calls.append(k.shape[1]) or q, min_keys=64)
    q, k, v = qkv(1, 63, 2, 64)
    out = glue._hub_style_kernel(q, k, v, sm_scale=0.2)
    torch.testing.assert_close(out, glue._sdpa_bshd(q, k, v, 0.2, False))
    glue._hub_style_kernel(*qkv(1, 64, 2, 64))
    glue._hub_style_kernel(*qkv(1, 100, 2, 16))  # head size the kernel is not built for
    assert calls == [64]
    with pytest.raises(NotImplementedError, match="log-sum-exp"):
        glue._hub_style_kernel(q, k, v, return_lse=True)


def run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def test_dispatcher_routes_self_attention_to_the_kernel(wan_dit):
    model, inputs = wan_dit
    plain = run(model, inputs)
    keys_seen: list[int] = []

    def counting_kernel(q, k, v, scale):
        keys_seen.append(k.shape[1])
        return fp8_attention(q, k, v, scale)

    glue.install_fp8_attention(kernel=counting_kernel, min_keys=16)
    use_attention_backend(model, "fp8")
    backends = {m.processor._attention_backend.value for m in model.modules() if hasattr(m, "processor")}
    assert backends == {"sage_hub"}
    out = run(model, inputs)
    assert keys_seen == [48] * model.config.num_layers  # self-attention only; 8 text keys took SDPA
    assert cosine(out, plain) > 0.999
    torch.testing.assert_close(out, plain, rtol=0.05, atol=0.05)


def test_fp8_backend_compiles_the_blocks_without_graph_breaks(wan_dit):
    model, inputs = wan_dit
    glue.install_fp8_attention(min_keys=16)
    use_attention_backend(model, "fp8")
    eager = run(model, inputs)
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(run(model, inputs), eager, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


def test_bench_smoke_runs_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/attention_speed.py", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "fp8 reference" in done.stdout and out.exists()


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("seq", [1000, 4100])
def test_gpu_kernel_matches_reference_and_sdpa(seq):
    if fp8_attention_unavailable(torch.device("cuda")):
        pytest.skip(fp8_attention_unavailable(torch.device("cuda")))
    q, k, v = (t.to("cuda", torch.bfloat16) for t in qkv(2, seq, 3, 128, offset=1.0))
    out = fp8_attention(q, k, v)
    reference = fp8_attention_reference(q, k, v)
    exact = exact_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == torch.bfloat16 and out.isfinite().all()
    # P is rounded to fp8 against the running max in the kernel and the global max in the reference:
    # that alone measures cosine ~0.9994 and max abs ~0.035 between two such roundings (CPU emulation).
    assert cosine(out, reference) > 0.999
    assert (out.float() - reference.float()).abs().max() < 0.06
    assert cosine(out, exact) > 0.995


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(("q_len", "kv_len", "dim"), [(700, 300, 64), (130, 40, 128), (64, 2100, 128)])
def test_gpu_kernel_other_lengths_and_head_sizes(q_len, kv_len, dim):
    """Queries and keys of different lengths, head size 64, fewer keys than one tile."""
    if fp8_attention_unavailable(torch.device("cuda")):
        pytest.skip(fp8_attention_unavailable(torch.device("cuda")))
    q = qkv(1, q_len, 2, dim, offset=1.0)[0].to("cuda", torch.bfloat16)
    _, k, v = (t.to("cuda", torch.bfloat16) for t in qkv(1, kv_len, 2, dim, offset=1.0, seed=1))
    out = fp8_attention(q, k, v)
    assert out.shape == q.shape and out.isfinite().all()
    assert cosine(out, fp8_attention_reference(q, k, v)) > 0.999
    assert cosine(out, exact_attention(q, k, v)) > 0.995


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
def test_gpu_turbo_forward_runs(wan_dit):
    """Turbo on its picked 8-bit kernel (SageAttention where installed, else ours), compiled."""
    cuda = torch.device("cuda")
    picked = pick_turbo_attention(cuda)[0]
    if picked is None:
        pytest.skip(pick_turbo_attention(cuda)[1])
    model, inputs = wan_dit
    model = model.to(cuda, torch.bfloat16)
    inputs = {k: v.to(cuda, torch.bfloat16 if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
    plain = run(model, inputs)
    (glue.install_sage_attention if picked == "sage" else glue.install_fp8_attention)(min_keys=16)
    record = apply_speed(type("Pipe", (), {"transformer": model})(), SpeedConfig(turbo=True), cuda)
    assert record["fp8_attention"]["on"] is True and record["attention"]["on"] == picked
    out = run(model, inputs)
    assert out.isfinite().all() and cosine(out, plain) > 0.99
    torch._dynamo.reset()
