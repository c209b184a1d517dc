"""Shared fixtures for the step-cache tests: one tiny random-weight Wan pipeline per session."""

from __future__ import annotations

import copy

import pytest
import torch

STEPS = 6


@pytest.fixture(scope="session")
def tiny_wan_pipe(tmp_path_factory):
    """A tiny ``WanPipeline`` (CPU, float32) built once from ``core.tiny``."""
    from diffusers import WanPipeline

    from core.tiny import build

    folder = build("tiny-wan", tmp_path_factory.mktemp("tiny-wan"))
    pipe = WanPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_card():
    from weights.registry import get_card

    return get_card("tiny-wan")


@pytest.fixture(scope="session")
def tiny_moe_pipe(tiny_wan_pipe):
    """The tiny pipeline plus a second expert ``transformer_2`` (Wan2.2 A14B layout), low-noise half."""
    from diffusers import WanPipeline

    components = dict(tiny_wan_pipe.components)
    components["transformer_2"] = copy.deepcopy(tiny_wan_pipe.transformer)
    pipe = WanPipeline(**components, boundary_ratio=0.5)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_latents(pipe, steps: int = STEPS, seed: int = 0) -> torch.Tensor:
    """Denoise a fixed prompt with CFG and return the final latents."""
    return pipe(
        prompt="a cat running on the beach",
        negative_prompt="blurry",
        height=48,
        width=64,
        num_frames=9,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).frames


class FeedForwardCounter:
    """Counts real block computations: calls of every block's feed-forward layer (torch forward hooks)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        self.calls = 0
        self.layers = len(transformer.blocks)
        self.handles = [block.ffn.register_forward_pre_hook(self._count) for block in transformer.blocks]

    def _count(self, module, args) -> None:
        self.calls += 1

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
