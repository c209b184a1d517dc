"""FlashVSR v1.1 streaming video super-resolution (our implementation, official weights)."""
