"""Shared checks for the precision tests of known divergences with traits.

An entry with a trait must hold on its witness and not on a nearby case without the bug's
shape; and a bug planted on such a nearby case, giving the very symptom (and, where the
entry names one, the message) the entry claims, must stay a failure.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.fx

from conform import known
from conform.case import Case
from conform.engine import check, prepare
from conform.outcome import Outcome, Verdict
from conform.registry import load
from generators.sources import trust_factory


def factory(module: str, builder: str) -> Case:
    """A factory case of ``module:builder``, trusted: the test names it itself."""
    trust_factory(f"{module}:{builder}")
    return Case(source="factory", spec={"factory": f"{module}:{builder}"})


def trait_holds(entry_id: str, case: Case, params: dict[str, Any]) -> bool:
    """Evaluate the trait the entry names on ``case`` as the engine would."""
    entry = known.by_id()[entry_id]
    assert entry.match.case, f"{entry_id} names no trait"
    prepared = prepare(case)
    assert not isinstance(prepared, Outcome), prepared.describe()
    return bool(load(entry.match.case)(prepared.graph_module, prepared.built, params))


def witness_trait_holds(entry_id: str) -> bool:
    entry = known.by_id()[entry_id]
    witness = known.load_witness(entry)
    return trait_holds(entry_id, witness.case, witness.params)


#: ``assert_unclaimed_failure(..., message=LIKE_ENTRY)``: a failing outcome is one the entry's
#: matcher would claim if only its trait held.
LIKE_ENTRY = object()


def assert_unclaimed_failure(outcomes: list[Outcome], entry_id: str, *, message: object = None) -> None:
    """Some outcome fails and none is claimed by ``entry_id``; when ``message`` is a regular
    expression, a failing outcome's message has it; when it is :data:`LIKE_ENTRY`, a failing
    outcome has every field the entry's matcher looks for and only the trait is missing."""
    described = "; ".join(o.describe() for o in outcomes)
    assert all(o.known_id != entry_id for o in outcomes), described
    failing = [o for o in outcomes if o.verdict is Verdict.FAIL]
    assert failing, described
    if message is LIKE_ENTRY:
        entry = known.by_id()[entry_id]
        assert entry.match.cases, f"{entry_id} names no trait"
        traited = [dataclasses.replace(o, notes={**o.notes, "traits": list(entry.match.cases)}) for o in failing]
        assert any(entry.matches(o) for o in traited), described
    elif message is not None:
        import re

        texts = ["\n".join([o.message, *(d.render() for d in o.diffs)]) for o in failing]
        assert any(re.search(str(message), t, re.S) for t in texts), described


def run(case: Case, transform: str, params: dict[str, Any]) -> list[Outcome]:
    return check(case, transform, params=params)


# --- planting ----------------------------------------------------------------------------------


def raising(exc: BaseException) -> Callable[..., Any]:
    """A stand-in for a transform that raises ``exc`` whatever it is given."""

    def planted(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return planted


def plant(monkeypatch: pytest.MonkeyPatch, module_path: str, attr: str, replacement: Any) -> None:
    """Replace ``module_path.attr`` (a reference or upstream module) for this test."""
    import importlib

    monkeypatch.setattr(importlib.import_module(module_path), attr, replacement)


_SWAPPED = {operator.add: operator.sub, operator.sub: operator.add, torch.add: torch.sub, torch.sub: torch.add}


def swap_first_add_or_sub(graph: torch.fx.Graph) -> bool:
    """Turn the first addition into a subtraction or the other way round (a miscompile)."""
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _SWAPPED:
            node.target = _SWAPPED[node.target]
            return True
    return False


def miscompile_module(module: torch.nn.Module) -> torch.nn.Module:
    """Swap the first add/sub in ``module`` or a GraphModule inside it, recompiling it."""
    for child in module.modules():
        if isinstance(child, torch.fx.GraphModule) and swap_first_add_or_sub(child.graph):
            child.recompile()
            break
    return module
