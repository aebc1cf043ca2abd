"""Helpers shared by the normalization-family tests (operator_schemas, normalize,
schema_type_annotation, rewriter, meta_tracer)."""

from __future__ import annotations

import pytest

from conform.implementations import Implementation
from conform.known import by_id


def upstream_diverges(request: pytest.FixtureRequest, impl: Implementation, known_id: str, *,
                      strict: bool = True) -> None:
    """Expect the running test to fail on upstream because of the registered known divergence
    ``known_id``. Strictly by default: a pass means the entry has gone stale (a sweep that
    checks only some samples passes ``strict=False``)."""
    entry = by_id()[known_id]
    if impl.name == "upstream":
        reason = f"known divergence {known_id}: {entry.reason}"
        request.applymarker(pytest.mark.xfail(reason=reason, strict=strict))
