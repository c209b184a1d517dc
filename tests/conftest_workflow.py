"""Fixtures for the workflow tests (batch, history): a Studio on the CPU with the tiny model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.settings import Settings
from core.studio import Studio


@pytest.fixture
def studio(settings: Settings) -> Iterator[Studio]:
    """A Studio writing into this test's temp outputs folder."""
    studio = Studio(settings)
    try:
        yield studio
    finally:
        studio.shutdown()
