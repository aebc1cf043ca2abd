from __future__ import annotations

import zlib

import pytest

from conform.execute import seed_everything
from conform.implementations import IMPLEMENTATIONS, Implementation


@pytest.fixture(autouse=True)
def _seeded(request: pytest.FixtureRequest) -> None:
    """Every test draws its random tensors from a generator seeded by its own id, so a test
    sees the same values on every run, whichever worker runs it and in whatever order."""
    seed_everything(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Each test that takes ``impl`` runs once against upstream torch.fx and once against
    ``reference/``; both must pass the same assertions."""
    return Implementation(request.param)
