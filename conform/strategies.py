"""The public strategy of cases for one transform: ``cases(row)`` draws ``(Case, params)``.

A draw picks a source (``random`` unless told otherwise), a spec (for ``random``, from the
row's focus when it has one: :func:`generators.focus.draw.focused_specs`), and a case seed,
then builds and traces the case (:func:`conform.engine.prepare`) and draws the row's
parameters from the traced module. The prepared case stays in a small per-process cache,
so the check that follows reuses it::

    >>> from hypothesis import given
    >>> @given(cases("fuse"))
    ... def test_fuse(drawn):
    ...     case, params = drawn
    ...     check(case, "fuse", params=params, prepared=prepared_for(case))

The campaign and ``tests/conformance`` draw through :func:`cases`.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from conform.case import Case
from conform.engine import Prepared, prepare
from conform.outcome import Outcome
from conform.registry import TransformSpec, get
from generators.sources import configured_source, source_names

DEFAULT_SOURCES: tuple[str, ...] = ("random",)
#: Prepared cases kept per process (a module, its inputs and eager outputs each).
CACHE_SIZE = 8

_cache: collections.OrderedDict[str, Prepared | Outcome] = collections.OrderedDict()


def prepared_for(case: Case) -> Prepared | Outcome:
    """:func:`conform.engine.prepare` of ``case``, from the cache when it was just drawn."""
    key = case.key
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    prepared = prepare(case)
    _cache[key] = prepared
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return prepared


def clear_cache() -> None:
    _cache.clear()


def specs_for(row: TransformSpec, source: str, options: Mapping[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Specs of ``source`` for ``row``: the row's focus for the random source (unless
    ``options`` configure that source), else the source's own specs."""
    focus = row.load_focus() if source == "random" and not options else None
    if focus is not None:
        from generators.focus.draw import focused_specs

        return focused_specs(focus)
    return configured_source(source, **dict(options or {})).specs()


def cases(
    transform: TransformSpec | str,
    *,
    sources: Sequence[str] | None = None,
    source_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> st.SearchStrategy[tuple[Case, dict[str, Any]]]:
    """``(Case, params)`` for one transform.

    Args:
        transform: a registry row or its name.
        sources: case source names to draw from; None is ``("random",)``.
        source_options: per-source options (as ``conform run`` passes them); a configured
            random source draws from its own options instead of the row's focus.

    Returns:
        A strategy of a case and the row's parameters for it (``{}`` when the row takes
        none or the case cannot be traced; :func:`prepared_for` then gives the Outcome).
    """
    row = transform if isinstance(transform, TransformSpec) else get(transform)
    names = tuple(sources) if sources else DEFAULT_SOURCES
    valid = source_names()
    for name in names:
        if name not in valid:
            from conform.errors import unknown

            raise unknown("source", name, valid)
    options = {k: dict(v) for k, v in (source_options or {}).items()}
    per_source = {name: specs_for(row, name, options.get(name)) for name in names}
    factory = row.load_params()

    @st.composite
    def draw_case(draw: st.DrawFn) -> tuple[Case, dict[str, Any]]:
        name = draw(st.sampled_from(names))
        spec = draw(per_source[name])
        seed = draw(st.integers(0, 2**31 - 1))
        case = Case(source=name, spec=spec, seed=seed)
        prepared = prepared_for(case)
        params: dict[str, Any] = {}
        if factory is not None and isinstance(prepared, Prepared):
            params = draw(factory(prepared.graph_module))
        return case, params

    return draw_case()
