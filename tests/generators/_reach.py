"""A short directed search: check focused cases of a row (fixed seed, generation only) until
the wanted known entries are reached or the examples run out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.engine import Prepared, check
from conform.registry import TransformSpec, get
from conform.strategies import cases, prepared_for


def _params_for(row: TransformSpec, case: Case,
                params: Callable[..., Any] | None) -> st.SearchStrategy[tuple[Case, dict[str, Any]]]:
    prepared = prepared_for(case)
    assert isinstance(prepared, Prepared), prepared.message
    factory = params or row.load_params()
    assert factory is not None, f"{row.name} draws no parameters"
    return st.tuples(st.just(case), factory(prepared.graph_module))


def _cases_with(row: TransformSpec, params: Callable[..., Any]) -> st.SearchStrategy[tuple[Case, dict[str, Any]]]:
    @st.composite
    def draw(draw: st.DrawFn) -> tuple[Case, dict[str, Any]]:
        case, _ = draw(cases(row))
        prepared = prepared_for(case)
        return case, draw(params(prepared.graph_module)) if isinstance(prepared, Prepared) else {}

    return draw()


class _Found(Exception):
    """Every wanted entry was reached."""


def search(transform: str | TransformSpec, wanted: set[str], *, examples: int, at: int = 0,
           case: Case | None = None, params: Callable[..., Any] | None = None, seeds: int = 3) -> set[str]:
    """Known ids reached by focused cases of ``transform``: at most ``examples`` drawn from
    seed ``at``, then as many from each next seed, up to ``seeds`` seeds (the search stops
    once every id of ``wanted`` is reached: a check cut by its time limit on a loaded machine
    costs a few more draws, not the test). With ``case``, only the parameters are drawn, for
    that case; ``params`` replaces the row's parameter strategy (``graph_module -> strategy``)."""
    row = transform if isinstance(transform, TransformSpec) else get(transform)
    reached: set[str] = set()

    def body(drawn: Any) -> None:
        drawn_case, params = drawn
        for outcome in check(drawn_case, row, params=params, prepared=prepared_for(drawn_case)):
            if outcome.known_id:
                reached.add(outcome.known_id)
        if wanted <= reached:
            raise _Found

    strategy = (_params_for(row, case, params) if case is not None else
                cases(row) if params is None else _cases_with(row, params))
    for attempt in range(seeds):
        # derandomize=False: the seed decides the draws whatever profile the session loaded
        run = settings(max_examples=examples, deadline=None, database=None, phases=(Phase.generate,),
                       derandomize=False, suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                       print_blob=False)(seed(at + attempt)(given(strategy)(body)))
        try:
            run()
        except _Found:
            break
    return reached
