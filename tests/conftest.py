from __future__ import annotations

import os
import zlib

import pytest
import torch

from conform.execute import seed_everything
from conform.implementations import IMPLEMENTATIONS, Implementation


def pytest_configure(config: pytest.Config) -> None:
    # An xdist worker is one of as many processes as there are cores: torch's intra-op
    # threads on top of that only make the workers wait on each other.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded(request: pytest.FixtureRequest) -> None:
    """Every test draws its random tensors from a generator seeded by its own id, so a test
    sees the same values on every run, whichever worker runs it and in whatever order."""
    seed_everything(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _plugins_restored() -> None:
    """A test that loads a plugin (``--plugin``, ``plugins.load``) leaves no rows behind."""
    from conform import plugins

    before = plugins.loaded()
    yield
    if plugins.loaded() != before:
        plugins.reset()


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Each test that takes ``impl`` runs once against upstream torch.fx and once against
    ``reference/``; both must pass the same assertions."""
    return Implementation(request.param)
