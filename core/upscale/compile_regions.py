"""Regional ``torch.compile`` of FlashVSR: the two dense parts of every DiT block and the TC decoder.

A DiT block's self-attention has state (the KV cache, the draft mask, the Triton kernel), so each block is
compiled as two regions around it (:func:`~core.upscale.dit.attention_inputs`,
:func:`~core.upscale.dit.attention_outputs`): one compiled function serves all 30 blocks, whose weights
are inputs. The block's own ``forward`` stays eager, so its forward hooks (cancel checks, the two-GPU
split) still run. Shapes are static: the first chunk (6 latent frames) and the steady one (2) compile once
each per output size. With ``cuda_graphs`` the DiT regions use compile's ``reduce-overhead`` mode; the
decoder keeps frames from chunk to chunk and never runs as CUDA graphs.

Inductor's caches go to ``<models>/torch-compile-cache`` (:func:`core.speed.compile.use_compile_cache`),
so a later run of the app skips most of the first run's compile time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.speed.compile import announce_first_call, should_compile, use_compile_cache
from core.upscale.dit import BlockRegions, attention_inputs, attention_outputs
from core.upscale.loading import FlashVSRModel
from core.upscale.speed import VSRSpeed

RECORD = "_vsr_compile_record"
RECOMPILE_LIMIT = 64
"""Room for the shapes of several output sizes in one process (torch's default is 8)."""


def compile_flashvsr(
    model: FlashVSRModel,
    speed: VSRSpeed,
    models_dir: Path | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compile ``model``'s regions in place as ``speed`` asks; returns what ran, for the record. ``report``
    hears :data:`core.speed.compile.COMPILE_STAGE` when the first (compiling) chunk starts.

    Compile cannot be undone in place: a second call returns the first call's record and changes nothing.
    """
    done = getattr(model.dit, RECORD, None)
    if done is not None:
        return done
    on, reason = should_compile(speed.compile, model.device)
    if not on:
        return {"compile": False, "reason": reason, "cuda_graphs": False}
    record: dict[str, Any] = {"compile": True, "reason": reason}
    if models_dir is not None:
        record["cache"] = str(use_compile_cache(models_dir))
    graphs = speed.cuda_graphs and model.device.type == "cuda"
    record["cuda_graphs"] = graphs
    if speed.cuda_graphs and not graphs:
        record["cuda_graphs_reason"] = f"needs a CUDA GPU (running on {model.device.type})"
    dynamo_config = torch._dynamo.config
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    options: dict[str, Any] = {"fullgraph": True, "dynamic": False}
    if graphs:
        options["mode"] = "reduce-overhead"
    dit = model.dit
    dit.regions = BlockRegions(
        torch.compile(attention_inputs, **options), torch.compile(attention_outputs, **options)
    )
    dit.real_rope = True  # complex tensors stay out of the compiled graphs
    dit.cuda_graphs = graphs
    if model.tc_decoder is not None:  # keeps per-chunk state in a dict: graph breaks allowed there
        model.tc_decoder._run = torch.compile(model.tc_decoder._run, dynamic=False)
        record["tc_decoder"] = True
    if report is not None:
        announce_first_call(dit.blocks[0], report)
    setattr(dit, RECORD, record)
    return record
