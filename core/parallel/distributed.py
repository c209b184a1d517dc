"""Process-group setup done by the app itself: one rank per GPU (NCCL), or per CPU process (gloo)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from core.parallel.config import ParallelConfig

MASTER_ADDR = "127.0.0.1"
MESH_DIMS = ("cfg", "ring", "ulysses")


def free_port() -> int:
    """A TCP port nobody listens on right now, for the rendezvous on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((MASTER_ADDR, 0))
        return sock.getsockname()[1]


def init_rank(rank: int, world_size: int, port: int) -> torch.device:
    """Join the process group as ``rank`` and return its device: visible GPU r, as diffusers and DeviceMesh
    assume (``rank % device_count``; the group starts its ranks seeing only its GPUs), or the CPU."""
    os.environ.update(MASTER_ADDR=MASTER_ADDR, MASTER_PORT=str(port))
    if torch.cuda.is_available():
        index = rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
        backend = "cpu:gloo,cuda:nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(
        backend, rank=rank, world_size=world_size, device_id=device if device.type == "cuda" else None
    )
    return device


def build_mesh(config: ParallelConfig, device: torch.device) -> DeviceMesh | None:
    """A ("cfg", "ring", "ulysses") mesh over all ranks; None for a single rank."""
    if config.world_size == 1:
        return None
    return init_device_mesh(device.type, (config.cfg, config.ring, config.ulysses), mesh_dim_names=MESH_DIMS)


@contextlib.contextmanager
def cpu_accelerator_count() -> Iterator[None]:
    """Let diffusers resolve a CPU rank's device: it computes ``rank % torch.accelerator.device_count()``,
    which divides by zero when there is no accelerator."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def enable_context_parallel(transformer: torch.nn.Module, config: ParallelConfig, mesh: DeviceMesh) -> None:
    """diffusers' context parallel on ``transformer`` over the ring/ulysses dims of ``mesh``.

    Ring attention needs an attention backend that returns the log-sum-exp; on GPUs that is cuDNN.
    """
    from diffusers import ContextParallelConfig

    if config.ring > 1 and mesh.device_type == "cuda":
        transformer.set_attention_backend("_native_cudnn")
    cp_config = ContextParallelConfig(ring_degree=config.ring, ulysses_degree=config.ulysses, mesh=mesh)
    with cpu_accelerator_count():
        transformer.enable_parallelism(config=cp_config)
