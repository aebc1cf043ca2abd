"""Tie a test to a registered known divergence: the upstream run is expected to fail."""

from __future__ import annotations

import pytest

from conform.implementations import Implementation
from conform.known import by_id


def upstream_bug(request: pytest.FixtureRequest, impl: Implementation, known_id: str) -> None:
    """Mark the current test as a strict expected failure on upstream.

    The assertions stay the same for both implementations; the upstream run fails because of
    the divergence ``known_id`` (which must be registered in ``conform/known/``). Strict:
    when upstream is fixed the test XPASSes, fails, and the entry is due for removal.
    """
    entry = by_id()[known_id]
    if impl.name == "upstream":
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{known_id}: {entry.reason}"))
