"""SageAttention as Turbo's 8-bit attention: picked before our Triton kernel when installed, routed by key
length through diffusers' dispatcher, traced by torch.compile as one custom op; on a GPU, close to SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import core.speed.attention as attention
import core.speed.fp8_attention as glue
from core.speed.attention import backend_unavailable, pick_turbo_attention, use_attention_backend

pytest_plugins = ["tests.conftest_speed"]
pytestmark = pytest.mark.usefixtures("restore_backend_slot")

CUDA = torch.device("cuda")


def sdpa_kernel(q, k, v, scale=None):
    """A stand-in for SageAttention on the CPU with the slot's signature: (B, S, H, D) in and out."""
    return glue._sdpa_bshd(q, k, v, scale, False)


def test_turbo_prefers_sage_over_the_triton_kernel(monkeypatch):
    monkeypatch.setattr(attention, "backend_unavailable", lambda name, device: None)
    name, reason = pick_turbo_attention(CUDA)
    assert name == "sage" and "SageAttention 2" in reason and f">= {glue.MIN_KEYS} keys" in reason

    why = {"sage": "SageAttention is not installed", "fp8": None}
    monkeypatch.setattr(attention, "backend_unavailable", lambda name, device: why[name])
    name, reason = pick_turbo_attention(CUDA)
    assert name == "fp8" and reason.endswith("SageAttention is not installed")


def test_sage_is_unavailable_on_cpu_with_reason():
    assert backend_unavailable("sage", torch.device("cpu")) == "sage needs a CUDA GPU (running on cpu)"


def test_sage_slot_routes_long_keys_and_compiles_in_one_graph(wan_dit):
    model, inputs = wan_dit
    with torch.no_grad():
        plain = model(**inputs, return_dict=False)[0]
    keys_seen: list[int] = []

    def counting_kernel(q, k, v, scale=None):
        keys_seen.append(k.shape[1])
        return sdpa_kernel(q, k, v, scale)

    glue.install_sage_attention(kernel=counting_kernel, min_keys=16)
    assert glue.sage_attention_installed() and not glue.fp8_attention_installed()
    use_attention_backend(model, "sage")
    assert glue.sage_attention_installed()  # an installed stand-in is kept, not replaced
    with torch.no_grad():
        out = model(**inputs, return_dict=False)[0]
    assert keys_seen == [48] * model.config.num_layers  # self-attention only; 8 text keys took SDPA
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)

    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, return_dict=False)[0], plain, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_sage_custom_op_has_a_fake():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q, k, v = (torch.empty(1, 300, 2, 64, dtype=torch.bfloat16) for _ in range(3))
        out = glue.sage_attention(q, k, v, 0.1)
    assert out.shape == q.shape and out.dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_sage_matches_sdpa():
    why_not = backend_unavailable("sage", CUDA)
    if why_not:
        pytest.skip(why_not)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4096, 3, 128, generator=generator) for _ in range(3))
    q, k, v = (t.to(CUDA, torch.bfloat16) for t in (q, k, v))
    out = glue.sage_attention(q, k, v, None)
    exact = glue._sdpa_bshd(q.float(), k.float(), v.float(), None, False)
    assert out.shape == q.shape and out.dtype == torch.bfloat16
    assert F.cosine_similarity(out.double().flatten(), exact.double().flatten(), dim=0) > 0.998


def test_sage_is_unavailable_on_gpus_without_its_kernels(monkeypatch):
    """SM100 (B200): ``sageattn`` refuses it, so Turbo must not pick SageAttention there."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (10, 0))
    assert backend_unavailable("sage", CUDA) == "SageAttention has no kernels for sm_100"
