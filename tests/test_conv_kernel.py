"""The Wan VAE decoder on our kernels (implicit-GEMM convolutions, fused RMS norm + SiLU): the wiring (on
the CPU through the kernels' torch fallbacks, the same maths) and, on a CUDA GPU, the Triton kernels
against cuDNN and against diffusers' norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResidualBlock, WanRMS_norm

from core.kernels.causal_conv3d import CHANNEL_MULTIPLE, conv3d_channels_last, prepare_weight, runs_kernel
from core.kernels.rms_norm_silu import rms_norm_silu
from core.kernels.rms_norm_silu import runs_kernel as rms_norm_runs_kernel
from core.speed.vae_decode import FAST_DECODER_ATTR, DecodeSetup, decode_stream
from core.speed.vae_kernels import KERNEL_WEIGHT, use_kernels

GPU = torch.cuda.is_available()


def vae_of_width(base_dim: int) -> AutoencoderKLWan:
    """A small random Wan2.1-layout VAE whose decoder widths are multiples of ``base_dim``."""
    torch.manual_seed(0)
    layout = dict(base_dim=base_dim, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1)
    return AutoencoderKLWan(**layout, temperal_downsample=[False, True, True]).eval()


def frames(vae: AutoencoderKLWan, latents: torch.Tensor, setup: DecodeSetup) -> np.ndarray:
    return np.concatenate([pending.wait() for pending in decode_stream(vae, latents, setup)]).astype(int)


def resnets(module: torch.nn.Module) -> list[WanResidualBlock]:
    return [m for m in module.modules() if isinstance(m, WanResidualBlock)]


def test_the_decoder_routes_through_the_kernels_and_makes_the_same_frames() -> None:
    vae = vae_of_width(32)
    latents = torch.randn(1, 16, 4, 3, 4, generator=torch.Generator().manual_seed(1))
    plain = frames(vae, latents, DecodeSetup(torch.float32, False, False, False, True, "test", 2))
    kernel_setup = DecodeSetup(torch.float32, False, False, False, True, "test", 2, conv_kernel="pointer")
    routed = frames(vae, latents, kernel_setup)

    decoder = getattr(vae, FAST_DECODER_ATTR)[1]
    convs = [m for m in decoder.modules() if isinstance(m, (WanCausalConv3d, torch.nn.Conv2d))]
    taken = [m for m in convs if hasattr(m, KERNEL_WEIGHT)]
    upsamplers = [m for m in decoder.modules() if isinstance(m, torch.nn.Sequential) and "forward" in vars(m)]
    assert {m.in_channels for m in convs if m not in taken} == {16}  # only the latents' first convolution
    fused = [m for m in decoder.modules() if isinstance(m, WanRMS_norm) and "forward" in vars(m)]
    assert not any(isinstance(m, torch.nn.SiLU) for m in decoder.modules())  # each folded into its norm
    assert len(taken) == len(convs) - 1 and len(fused) == 2 * len(resnets(decoder)) + 1
    assert len(upsamplers) == 3  # each upsampling and its convolution in one kernel call
    assert len(taken) + len(fused) == use_kernels(vae_of_width(32).decoder, "tma")
    assert routed.shape == plain.shape == (13, 24, 32, 3)
    assert np.abs(routed - plain).max() <= 1  # conv2d and conv3d sum in different orders
    assert vae.decoder is not decoder and "forward" not in vars(vae.decoder.conv_out)  # the original is kept
    assert kernel_setup.to_record()["conv_kernel"] == "pointer"


def test_the_kernel_is_only_asked_for_what_it_is_built_for() -> None:
    x = torch.randn(1, CHANNEL_MULTIPLE, 2, 3, 3)
    weight = torch.randn(8, CHANNEL_MULTIPLE, 3, 3, 3)
    assert not runs_kernel(x, weight)  # the CPU: torch fallback
    out = conv3d_channels_last(x, weight, None, (2, 1, 1))
    assert torch.equal(out, F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0)), weight))
    assert prepare_weight(weight).shape == (3, 3, 3, CHANNEL_MULTIPLE, 8)


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (Triton)")
@pytest.mark.parametrize("method", ["pointer", "tma"])
@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "padding", "size"),
    [
        (96, 96, (3, 3, 3), (2, 1, 1), (3, 17, 30)),
        (192, 384, (1, 1, 1), (0, 0, 0), (2, 9, 11)),
        (384, 768, (3, 1, 1), (1, 0, 0), (3, 5, 7)),
        (64, 3, (3, 3, 3), (0, 1, 1), (4, 8, 8)),
        (192, 96, (1, 3, 3), (0, 1, 1), (1, 31, 33)),
    ],
)
def test_on_a_gpu_the_triton_kernels_match_cudnn(method, c_in, c_out, kernel, padding, size) -> None:
    device = torch.device("cuda", 0)
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(2, c_in, *size, device=device, generator=generator, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = (
        torch.randn(c_out, c_in, *kernel, device=device, generator=generator, dtype=torch.bfloat16) * 0.05
    )
    bias = torch.randn(c_out, device=device, generator=generator, dtype=torch.bfloat16)
    assert runs_kernel(x, weight)
    pt, ph, pw = padding
    reference = F.conv3d(F.pad(x.float(), (pw, pw, ph, ph, pt, 0)), weight.float(), bias.float())
    out = conv3d_channels_last(x, weight, bias, padding, method=method)
    assert out.shape == reference.shape and out.is_contiguous(memory_format=torch.channels_last_3d)
    error = (out.float() - reference).abs().max().item()
    assert error <= 0.02 * reference.abs().max().item(), error


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (Triton)")
@pytest.mark.parametrize(("channels", "bias"), [(96, False), (384, True), (12, False)])
def test_on_a_gpu_the_fused_norm_and_silu_match_diffusers(channels: int, bias: bool) -> None:
    device = torch.device("cuda", 0)
    norm = WanRMS_norm(channels, images=False, bias=bias).to(device)
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
        if bias:
            norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, channels, 3, 17, 30, device=device, dtype=torch.bfloat16) * 3
    x = x.contiguous(memory_format=torch.channels_last_3d)
    assert rms_norm_runs_kernel(x)
    reference = F.silu(norm(x.float()))
    out = rms_norm_silu(x, norm.gamma.to(x.dtype), norm.bias, norm.scale)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last_3d)
    assert (out.float() - reference).abs().max().item() <= 0.02 * reference.abs().max().item()


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (Triton)")
def test_on_a_gpu_an_upsampler_convolves_the_upsampled_frames_without_making_them() -> None:
    device = torch.device("cuda", 0)
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(4, 192, 1, 15, 26, device=device, generator=generator, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = torch.randn(96, 192, 1, 3, 3, device=device, generator=generator, dtype=torch.bfloat16) * 0.05
    upsampled = F.interpolate(x.float(), scale_factor=(1, 2, 2), mode="nearest-exact")
    reference = F.conv3d(F.pad(upsampled, (1, 1, 1, 1)), weight.float())
    out = conv3d_channels_last(x, weight, None, (0, 1, 1), upsample=2)
    assert out.shape == reference.shape == (4, 96, 1, 30, 52)
    assert (out.float() - reference).abs().max().item() <= 0.02 * reference.abs().max().item()
