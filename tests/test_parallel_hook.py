"""The CFG-parallel hook in one process: each rank computes only its branch and gets the other's output.

The all_gather is replaced by a stand-in that supplies the other rank's result, so both sides are checked
without a process group (the 2-process run is in test_parallel_split.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers.hooks.hooks import CacheContext, _set_cache_context

from core.parallel import cfg_hook
from core.parallel.cfg_hook import apply_cfg_parallel


class CountingTransformer(torch.nn.Module):
    """Output = hidden x prompt scale, with a different channel count, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(out_channels=3)
        self.prompts: list[float] = []

    def forward(
        self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, return_dict: bool = True
    ):
        self.prompts.append(float(encoder_hidden_states))
        out = hidden_states[:, :3] * encoder_hidden_states
        return SimpleNamespace(sample=out) if return_dict else (out,)


HIDDEN = torch.arange(2 * 4 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 4, 2, 3, 3)
COND, UNCOND = torch.tensor(2.0), torch.tensor(-1.0)


def one_step(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The two calls a Wan pipeline step makes, returned as the pipeline would hold them."""
    results = []
    for name, prompt in (("cond", COND), ("uncond", UNCOND)):
        _set_cache_context(model, CacheContext(name, step_index=0))
        results.append(model(hidden_states=HIDDEN, encoder_hidden_states=prompt, return_dict=False)[0])
        _set_cache_context(model, None)
    return results[0], results[1]


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Stands in for ``dist.all_gather``: the other rank's tensor comes from ``peer["tensor"]``."""
    state: dict = {"calls": 0}

    def all_gather(outputs: list[torch.Tensor], mine: torch.Tensor, group: object) -> None:
        state["calls"] += 1
        outputs[state["rank"]].copy_(mine)
        outputs[1 - state["rank"]].copy_(state["tensor"])

    monkeypatch.setattr(cfg_hook.dist, "all_gather", all_gather)
    return state


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_computes_its_branch_and_receives_the_other(peer: dict, rank: int) -> None:
    expected = (HIDDEN[:, :3] * COND, HIDDEN[:, :3] * UNCOND)
    peer.update(rank=rank, tensor=expected[1 - rank])
    model = CountingTransformer()
    apply_cfg_parallel(model, group=None, branch_rank=rank)
    for _ in range(2):
        cond, uncond = one_step(model)
        assert torch.equal(cond, expected[0]) and torch.equal(uncond, expected[1])
    assert model.prompts == [float((COND, UNCOND)[rank])] * 2
    assert peer["calls"] == 2


def test_calls_outside_a_cfg_context_run_unchanged(peer: dict) -> None:
    model = CountingTransformer()
    apply_cfg_parallel(model, group=None, branch_rank=1)
    out = model(hidden_states=HIDDEN, encoder_hidden_states=COND)
    assert torch.equal(out.sample, HIDDEN[:, :3] * COND)
    assert model.prompts == [2.0] and peer["calls"] == 0


def test_uncond_without_cond_is_an_error(peer: dict) -> None:
    model = CountingTransformer()
    apply_cfg_parallel(model, group=None, branch_rank=0)
    _set_cache_context(model, CacheContext("uncond"))
    with pytest.raises(RuntimeError, match="without a cond call"):
        model(hidden_states=HIDDEN, encoder_hidden_states=UNCOND)
