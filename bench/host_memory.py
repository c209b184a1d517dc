"""Host memory measurements for bench/memory.py: peak RSS while a block runs, private (anonymous) RSS,
evicting a mapped file's pages, and torch's pinned host memory peak."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

import psutil
import torch

GIB = 2**30


class RssPeak:
    """Peak resident set size of this process while the block runs, sampled every 20 ms."""

    def __enter__(self) -> RssPeak:
        self.start = psutil.Process().memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, psutil.Process().memory_info().rss)

    @property
    def rise_gib(self) -> float:
        return (self.peak - self.start) / GIB


def rss_anon() -> int:
    """Private (anonymous) resident bytes of this process: what mapped weights do not add to."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("RssAnon:"))
    return int(line.split()[1]) * 1024


def drop_file_pages(model: torch.nn.Module, path: Path) -> None:
    """Evict the mapped cache file from this process and from the page cache (no root needed): unmap
    the touched pages of the model's mapping (``MADV_DONTNEED``), then ``POSIX_FADV_DONTNEED`` the file."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size  # the mapping's storage; weights the CPU has rewritten are not in it
    storages = {s.data_ptr() for s in (p.untyped_storage() for p in model.parameters()) if s.nbytes() == size}
    page = os.sysconf("SC_PAGE_SIZE")
    for start in storages:
        aligned = start - start % page
        libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(size + start - aligned), 4)  # MADV_DONTNEED
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def host_pinned_peak_gib() -> float:
    stats = getattr(torch.cuda, "host_memory_stats", None)
    if stats is None or not torch.cuda.is_available():
        return float("nan")
    return stats().get("allocated_bytes.peak", float("nan")) / GIB
