"""The default plugin: fx-conform's own transforms, case sources, known divergences and oracles.

Each hook reads the built-in tables when it is called, so the tables stay the single place
where a built-in row, source or entry is declared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conform.plugins import hookimpl


@hookimpl
def conform_transforms() -> list[Any]:
    from conform import registry

    return list(registry.TRANSFORMS)


@hookimpl
def conform_sources() -> dict[str, Callable[[], Any]]:
    from generators import sources

    return dict(sources.BUILTIN_SOURCES)


@hookimpl
def conform_known() -> list[Any]:
    from conform import known

    return list(known.KNOWN)


@hookimpl
def conform_oracles() -> list[Any]:
    """The metamorphic oracles (retrace, roundtrip, compose, idempotent), which each row
    enables by its ``oracles``; they run as one because they share a side's re-traced module
    and skip a side that an earlier one already blamed."""
    from conform.oracles import metamorphic

    return [metamorphic.judge]
