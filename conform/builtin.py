"""The default plugin: fx-conform's own transforms, case sources and known divergences.

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
