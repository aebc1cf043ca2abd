"""A plugin for the campaign tests: two known entries for the planted upstream crash, one
whose witness still shows it and one whose witness no longer does."""

from __future__ import annotations

from conform.known import Kind, KnownDivergence, Match
from conform.plugins import hookimpl


@hookimpl
def conform_known() -> list[KnownDivergence]:
    return [
        KnownDivergence(
            id="planted-no-longer", transform="planted_upstream_crash", kind=Kind.UPSTREAM_BUG,
            reason="a divergence the witness no longer shows", match=Match(exception="ValueError"),
            witness="test_known:planted_witness"),
        KnownDivergence(
            id="planted-live", transform="planted_upstream_crash", kind=Kind.UPSTREAM_BUG,
            reason="the planted upstream crash", match=Match(exception="KeyError"),
            witness="test_known:planted_witness"),
    ]
