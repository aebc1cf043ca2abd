"""The validator row's directed draws: expressions built around negative rounded quotients
and negative bitwise results, over the sizes of small focused modules, reach the known
translation divergences of TruncToInt and the bitwise functions."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _reach import search
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.engine import Prepared, prepare
from conform.registry import get
from conform.traits.optimization import negative_bitwise_result, truncation_of_negative_fraction
from generators.focus.draw import focused_specs
from generators.params.optimization import (
    BITWISE_OPS,
    ROUNDING_OPS,
    negative_bitwise,
    negative_quotients,
    validator_params,
)
from generators.sources import Built

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _built(*shape: int) -> Built:
    return Built(torch.nn.Identity(), (torch.zeros(shape),))


def _subtrees(tree: list[Any]) -> list[list[Any]]:
    out = [tree]
    if tree[0] not in ("sym", "int"):
        out += _subtrees(tree[1]) + _subtrees(tree[2])
    return out


@SETTINGS
@given(negative_quotients())
def test_negative_quotient_is_negative_and_not_whole_at_small_sizes(tree: list[Any]) -> None:
    assert tree[0] in ROUNDING_OPS
    _, (_, _, (_, k)), (_, d) = tree
    assert d > 0
    # at a size of 1 the dividend is 1 - k < 0: the trait sees a negative quotient whenever
    # d does not divide it
    params = {"expr": ["trunc_div", tree[1], tree[2]]}
    expected = (1 - k) < 0 and (1 - k) % d != 0
    assert truncation_of_negative_fraction(None, _built(1), params) == expected  # type: ignore[arg-type]


def _at_one(tree: list[Any]) -> int:
    """Value of a corner tree with every size 1."""
    if tree[0] == "int":
        return tree[1]
    if tree[0] == "sym":
        return 1
    assert tree[0] == "sub"
    return _at_one(tree[1]) - _at_one(tree[2])


@SETTINGS
@given(negative_bitwise())
def test_negative_bitwise_result_is_seen_by_the_trait(tree: list[Any]) -> None:
    assert tree[0] in BITWISE_OPS
    a, b = _at_one(tree[1]), _at_one(tree[2])
    result = a | b if tree[0] == "bor" else a & b
    if tree[0] == "bor":
        assert result < 0, "an or with a negative literal is negative"
    assert negative_bitwise_result(None, _built(1), {"expr": tree}) == (result < 0)  # type: ignore[arg-type]


def test_validator_params_draw_the_constructs_often() -> None:
    gm = torch.fx.symbolic_trace(torch.nn.Identity())
    seen: dict[str, int] = {"rounding": 0, "bitwise": 0}
    total = 200

    @settings(max_examples=total, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(validator_params(gm))
    def draw(params: dict[str, Any]) -> None:
        ops = {t[0] for t in _subtrees(params["expr"])}
        seen["rounding"] += bool(ops & set(ROUNDING_OPS))
        seen["bitwise"] += bool(ops & set(BITWISE_OPS))

    draw()
    assert seen["rounding"] >= total // 4 and seen["bitwise"] >= total // 4, seen


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(focused_specs(get("validator").load_focus()), st.integers(0, 2**16))
def test_validator_focus_draws_small_modules_with_sized_inputs(spec: dict[str, Any], seed: int) -> None:
    prepared = prepare(Case("random", spec, seed))
    assert isinstance(prepared, Prepared), prepared.message
    assert any(isinstance(a, torch.Tensor) for a in prepared.built.args)
    assert len(prepared.graph_module.graph.nodes) <= 200


ENTRIES = {"validator-trunc-to-int", "validator-bitwise-unsigned", "validator-trunc-to-int-term",
           "validator-bitwise-unsigned-term"}


def test_drawn_expressions_reach_every_validator_entry_on_one_case() -> None:
    case = Case("factory", {"factory": "conform.witnesses.optimization:sized"})
    reached = search("validator", ENTRIES, examples=150, case=case)
    assert ENTRIES <= reached, reached


@pytest.mark.slow
def test_a_short_focused_search_reaches_the_validator_entries() -> None:
    # focused modules and drawn expressions together: both wrong translations
    wanted = {"validator-trunc-to-int", "validator-bitwise-unsigned"}
    reached = search("validator", wanted, examples=100)
    assert wanted <= reached, reached
