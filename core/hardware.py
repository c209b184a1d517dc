"""What the machine has: GPUs (name, memory, compute capability) and system RAM."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_gb: float
    free_gb: float
    capability: tuple[int, int]


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[GpuInfo, ...]
    ram_total_gb: float
    ram_available_gb: float

    def summary(self) -> str:
        """One line per device, for the UI and the log."""
        lines = [
            f"GPU {g.index}: {g.name}, {g.free_gb:.1f} of {g.total_gb:.1f} GB free, "
            f"sm_{g.capability[0]}{g.capability[1]}"
            for g in self.gpus
        ] or ["No CUDA GPU found: running on the CPU (slow; fine for the tiny test models)."]
        lines.append(f"RAM: {self.ram_available_gb:.1f} of {self.ram_total_gb:.1f} GB available")
        return "\n".join(lines)


def detect_hardware(gpus: tuple[int, ...] | None = None) -> Hardware:
    """Read the GPUs (all visible ones, or those in ``gpus``) and system memory now."""
    found = []
    if torch.cuda.is_available():
        for index in gpus if gpus is not None else range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            props = torch.cuda.get_device_properties(index)
            found.append(GpuInfo(index, props.name, total / 2**30, free / 2**30, (props.major, props.minor)))
    memory = psutil.virtual_memory()
    return Hardware(tuple(found), memory.total / 2**30, memory.available / 2**30)


def available_ram_gib() -> float:
    """System RAM available now (psutil's ``available``), in GiB."""
    return psutil.virtual_memory().available / 2**30


def compute_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs, float32 on the CPU (where bf16 matmuls are slow)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class PeakMemory:
    """Measure the peak memory of a block: GPU allocations on CUDA, the process's peak RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_gb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_gb = torch.cuda.max_memory_allocated(self.device) / 2**30
        else:
            scale = 1 if sys.platform == "darwin" else 1024
            self.peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
