"""The streaming self-attention KV cache: per layer, the key/value windows of the last few slabs.

After each chunk a layer keeps the key/value windows of its last ``max_slabs`` slabs (the official
``kv_ratio`` rule: the windows it attended to, less the oldest slab once over the limit). With
``store_device`` set to the CPU the windows live in (pinned) host memory between chunks and visit the
GPU only for their layer's attention, as the FlashVSR deployment does on cards with 24 GB or less.
"""

from __future__ import annotations

import torch


class StreamingKVCache:
    """Key/value windows per layer, shaped (slabs * windows_per_slab, 128, dim)."""

    def __init__(self, num_layers: int, max_slabs: int, store_device: torch.device | None = None) -> None:
        self.max_slabs = max_slabs
        self.store_device = store_device
        self._keys: list[torch.Tensor | None] = [None] * num_layers
        self._values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def offloaded(self) -> bool:
        return self.store_device is not None and self.store_device.type == "cpu"

    def get(self, layer: int, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The cached windows of ``layer`` on ``device`` (None before the first chunk)."""
        keys, values = self._keys[layer], self._values[layer]
        if keys is None or values is None:
            return None, None
        return keys.to(device, non_blocking=True), values.to(device, non_blocking=True)

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor, windows_per_slab: int) -> None:
        """Add a chunk's new windows and keep the last ``max_slabs`` slabs. Only the new windows are copied
        to the store device; the official rule (drop the oldest slab once over the limit) keeps the same."""
        if self.store_device is not None and self.store_device != keys.device:
            keys, values = self._to_store(keys), self._to_store(values)
        keep = self.max_slabs * windows_per_slab
        stored_k, stored_v = self._keys[layer], self._values[layer]
        if stored_k is not None and stored_v is not None:
            keys, values = torch.cat([stored_k, keys]), torch.cat([stored_v, values])
        self._keys[layer], self._values[layer] = keys[-keep:], values[-keep:]

    def _to_store(self, tensor: torch.Tensor) -> torch.Tensor:
        assert self.store_device is not None
        pin = self.store_device.type == "cpu" and tensor.device.type == "cuda"
        host = torch.empty(tensor.shape, dtype=tensor.dtype, device=self.store_device, pin_memory=pin)
        host.copy_(tensor, non_blocking=pin)
        return host

    def nbytes(self) -> int:
        """Bytes held by the cache now."""
        return sum(t.numel() * t.element_size() for t in (*self._keys, *self._values) if t is not None)

    def clear(self) -> None:
        self._keys = [None] * len(self._keys)
        self._values = [None] * len(self._values)
