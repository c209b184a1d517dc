"""The streaming self-attention KV cache: per layer, the key/value windows of the last few slabs.

After each chunk a layer keeps the key/value windows of its last ``max_slabs`` slabs (the official
``kv_ratio`` rule: the windows it attended to, less the oldest slab once over the limit). The windows are
kept one tensor per slab, so a chunk copies in only its new slab and the slab that drops out gives its
buffer to the next one (no whole-cache concatenation between chunks).

Storage: the model dtype (default), or fp8 e4m3 with a float32 scale per token and head (``fp8``: half
the bytes, lossy). With ``store_device`` set to the CPU the slabs live in pinned host memory and visit the
GPU only for their layer's attention, as the FlashVSR deployment does on cards with 24 GB or less; with
``prefetch`` the next layer's slabs are copied on a side stream while this layer computes.
"""

from __future__ import annotations

from collections import deque

import torch

from core.upscale.kv_slab import Slab, SlabCodec
from core.upscale.speed import KV_STORAGES
from core.validation import as_choice


class StreamingKVCache:
    """Key/value windows per layer, each slab shaped (windows_per_slab, 128, dim)."""

    def __init__(
        self,
        num_layers: int,
        max_slabs: int,
        store_device: torch.device | None = None,
        storage: str = "model",
        num_heads: int = 1,
        prefetch: bool = False,
    ) -> None:
        self.max_slabs = max_slabs
        self.store_device = store_device
        self.codec = SlabCodec(as_choice("kv_cache", storage, KV_STORAGES), num_heads)
        self.prefetch = prefetch and self.offloaded and torch.cuda.is_available()
        self._slabs: list[deque[tuple[Slab, Slab]]] = [deque() for _ in range(num_layers)]
        self._fetched: dict[int, tuple[list[torch.Tensor], list[torch.Tensor], torch.cuda.Event]] = {}
        self._copy_stream = torch.cuda.Stream() if self.prefetch else None

    @property
    def offloaded(self) -> bool:
        return self.store_device is not None and self.store_device.type == "cpu"

    def with_new(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached windows of ``layer`` followed by the chunk's new ``keys``/``values``, on their device
        (one concatenation)."""
        fetched = self._fetched.pop(layer, None)
        if fetched is not None and fetched[0] and fetched[0][0].device != keys.device:
            fetched = None  # the layer runs on another GPU (pipeline split): fetch it there
        if fetched is not None:
            torch.cuda.current_stream(keys.device).wait_event(fetched[2])
            old_k, old_v = fetched[0], fetched[1]
        else:
            old_k, old_v = self._gather(layer, keys.device, keys.dtype)
        if self.prefetch and layer + 1 < len(self._slabs):
            self._start_fetch(layer + 1, keys.device, keys.dtype)
        if not old_k:
            return keys, values
        return torch.cat([*old_k, keys]), torch.cat([*old_v, values])

    def _gather(
        self, layer: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        slabs = self._slabs[layer]
        keys = [self.codec.decode(k, device, dtype) for k, _ in slabs]
        return keys, [self.codec.decode(v, device, dtype) for _, v in slabs]

    def _start_fetch(self, layer: int, device: torch.device, dtype: torch.dtype) -> None:
        """Copy ``layer``'s slabs to ``device`` on the side stream; :meth:`with_new` waits for it."""
        assert self._copy_stream is not None
        self._copy_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(self._copy_stream):
            keys, values = self._gather(layer, device, dtype)
            event = torch.cuda.Event()
            event.record()
        for tensor in (*keys, *values):
            tensor.record_stream(torch.cuda.current_stream(device))
        self._fetched[layer] = (keys, values, event)

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor, windows_per_slab: int) -> None:
        """Store a chunk's new windows slab by slab and drop the oldest slabs over ``max_slabs``."""
        slabs = self._slabs[layer]
        device = self.store_device or keys.device
        for start in range(0, keys.shape[0], windows_per_slab):
            stop = start + windows_per_slab
            spare = slabs.popleft() if len(slabs) == self.max_slabs else (None, None)
            slabs.append(
                (
                    self.codec.encode(keys[start:stop], device, spare[0]),
                    self.codec.encode(values[start:stop], device, spare[1]),
                )
            )
        while len(slabs) > self.max_slabs:
            slabs.popleft()

    def nbytes(self) -> int:
        """Bytes held by the cache now."""
        return sum(k.nbytes + v.nbytes for slabs in self._slabs for k, v in slabs)

    def clear(self) -> None:
        if self._copy_stream is not None:
            self._copy_stream.synchronize()
        self._slabs = [deque() for _ in self._slabs]
        self._fetched.clear()
