from __future__ import annotations

import pytest

from conform.implementations import IMPLEMENTATIONS, Implementation


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Each test that takes ``impl`` runs once against upstream torch.fx and once against
    ``reference/``; both must pass the same assertions."""
    return Implementation(request.param)
