"""Compiled blocks under the app's hooks: more steps and blocks than dynamo's recompile limit (8) run
without recompiling, and a second job without a step cache compiles nothing (the cache stats' block
counter once made every count, and every job's new hook, a new graph: with ``fullgraph=True`` the 9th
failed the run), and a step cache's hooks added after compiling run (TeaCache decides outside the graph,
which ``fullgraph=True`` refused); inductor's cache folder lands in the models folder."""

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
from core.speed.compile import CACHE_FOLDER, compile_blocks, use_compile_cache
from core.tasks.t2v import T2VRequest, generate_t2v
from weights.registry import get_card


def test_a_deep_compiled_dit_runs_more_steps_and_jobs_than_the_recompile_limit_allows_graphs(
    models_dir: Path,
) -> None:
    card = get_card("tiny-wan")
    pipe = load_diffusers_pipeline(card, models_dir / "tiny-wan", torch.device("cpu"), 0)
    config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    pipe.transformer = WanTransformer3DModel(**(config | {"num_layers": 10})).eval().requires_grad_(False)
    request = T2VRequest(model="tiny-wan", prompt="a cat", seed=1, steps=10, frames=5)
    compile_blocks(pipe.transformer, fullgraph=False, backend="eager")  # as apply_speed compiles
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    graphs = []
    for _job in range(2):  # no step cache: no hook in the blocks, so a second job compiles nothing
        with apply_cache(pipe, card, parse_cache_config(None, card)) as session:
            generate_t2v(pipe, request, Job(None))
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        assert session.stats()["steps_computed"] == 20  # 10 steps x CFG's two branches
    assert graphs[0] <= 2 and graphs[1] == graphs[0]
    teacache = parse_cache_config({"method": "teacache", "threshold": 0.0}, card)
    with apply_cache(pipe, card, teacache) as session:  # the block counter runs in the compiled graph
        generate_t2v(pipe, request, Job(None))
    assert session.stats()["steps_computed"] == 20
    # the cache's branch state (cond / uncond) and its first call make a few graphs; one per forward
    # (the old int counter) would make 20
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs[0] < 10


def test_inductor_cache_goes_to_the_models_folder_unless_the_user_chose_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # as inductor leaves it
    assert use_compile_cache(tmp_path) == tmp_path / CACHE_FOLDER
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / CACHE_FOLDER)
    mine = tmp_path / "mine"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(mine))
    assert use_compile_cache(tmp_path) == mine
