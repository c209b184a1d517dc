"""Compiled blocks under the app's hooks: more steps and blocks than dynamo's recompile limit (8) run
without recompiling (the cache stats' block counter once made every count a new graph, and with
``fullgraph=True`` the 9th failed the run); inductor's cache folder lands in the models folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch._dynamo
from diffusers import WanTransformer3DModel
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from core.caches import apply_cache, parse_cache_config
from core.jobs import Job
from core.pipelines import load_diffusers_pipeline
from core.speed.compile import CACHE_FOLDER, use_compile_cache
from core.tasks.t2v import T2VRequest, generate_t2v
from weights.registry import get_card


def test_a_deep_compiled_dit_with_cache_stats_runs_more_steps_than_the_recompile_limit(
    models_dir: Path,
) -> None:
    card = get_card("tiny-wan")
    pipe = load_diffusers_pipeline(card, models_dir / "tiny-wan", torch.device("cpu"), 0)
    config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    pipe.transformer = WanTransformer3DModel(**(config | {"num_layers": 10})).eval().requires_grad_(False)
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=1, steps=10, frames=5)
    with apply_cache(pipe, card, parse_cache_config(None, card)) as session:
        pipe.transformer.compile_repeated_blocks(fullgraph=True, backend="eager")
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        generate_t2v(pipe, request, Job(None))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2
    assert session.stats()["steps_computed"] == 20  # 10 steps x CFG's two branches, still counted


def test_inductor_cache_goes_to_the_models_folder_unless_the_user_chose_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # as inductor leaves it
    assert use_compile_cache(tmp_path) == tmp_path / CACHE_FOLDER
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / CACHE_FOLDER)
    mine = tmp_path / "mine"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(mine))
    assert use_compile_cache(tmp_path) == mine
