"""Cancel inside a FlashVSR chunk: the job's cancel is checked before every DiT block and every decoder
stage (forward pre-hooks), so a 4K chunk that takes minutes stops within one block's time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from torch import nn


class Cancellable(Protocol):
    def check_cancelled(self) -> None: ...


def checked_modules(model: Any) -> list[nn.Module]:
    """The DiT's blocks and the decoder's stages (its submodules that hold others) of a FlashVSR model."""
    modules: list[nn.Module] = list(model.dit.blocks)
    for decoder in (model.tc_decoder, model.vae_decoder):
        if decoder is not None:
            modules += [m for m in decoder.modules() if m is not decoder and any(True for _ in m.children())]
    return modules


@contextmanager
def cancel_checks(model: Any, job: Cancellable) -> Iterator[None]:
    """While the block runs, ``job.check_cancelled()`` (JobCancelledError) before each checked module."""
    handles = [
        module.register_forward_pre_hook(lambda *_: job.check_cancelled())
        for module in checked_modules(model)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
