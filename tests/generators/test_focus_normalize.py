"""Directed generation of the normalization and meta-tracing rows: every pattern of their
foci is planted by a focused draw and the module runs (traced as eagerly), and a short
focused search reaches each known divergence the rows register."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, seed, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.engine import check, trace
from conform.registry import get
from generators import spec as spec_mod
from generators.focus.draw import features, focused_config, focused_specs
from generators.random_modules import genomes, realize
from tests.generators._normalize_constructs import CONSTRUCTS

ROWS = ("normalize_args", "normalize_args_typed", "normalize_operators", "annotate_types", "meta_trace")
NEW_PATTERNS = sorted(CONSTRUCTS)


def _row_patterns() -> list[tuple[str, str]]:
    return [(row, name) for row in ROWS for name in get(row).load_focus().patterns if name in CONSTRUCTS]


def test_every_row_has_a_focus_with_new_patterns() -> None:
    for row in ROWS:
        focus = get(row).load_focus()
        assert focus is not None, row
        assert set(focus.patterns) & set(CONSTRUCTS), row
        features(focus)  # every name is an op kind or category


@pytest.mark.parametrize(("row", "pattern"), _row_patterns())
def test_focused_draw_plants_the_pattern_and_the_module_runs(row: str, pattern: str) -> None:
    focus = get(row).load_focus()
    table = features(focus)
    # the swarm subset that keeps this pattern alone
    omit = [name != pattern for name, _ in table]
    config = focused_config(focus, omit)
    planted = []

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=(Phase.generate,))
    @seed(7)
    @given(genomes(config))
    def draw(genome: dict[str, Any]) -> None:
        spec = realize(genome, config)
        spec_mod.validate(spec)
        if not any(node["op"] == pattern for node in spec["nodes"]):
            return
        built = spec_mod.build(spec, 0)
        gm = trace(built)
        gm.graph.lint()
        assert CONSTRUCTS[pattern](gm), gm.code
        expected = built.module(*built.args)
        if not built.stochastic:
            torch.testing.assert_close(gm(*built.args), expected, equal_nan=True)
        planted.append(spec)

    draw()
    assert len(planted) >= 3, f"{row} planted {pattern} in {len(planted)} of 12 draws"


class _Reached(Exception):
    pass


#: known id -> (row, the focus pattern behind it, the row's parameters)
ENTRIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "normalize-args-self-parameter-name": ("normalize_args", "aten_overload_call", {"normalize_to_only_use_kwargs": True}),
    "normalize-args-hand-written-signatures": ("normalize_args", "nonzero_call", {"normalize_to_only_use_kwargs": True}),
    "normalize-args-typed-self-parameter-name": ("normalize_args_typed", "scalar_self_call",
                                                 {"normalize_to_only_use_kwargs": True}),
    "normalize-args-typed-hand-written-signatures": ("normalize_args_typed", "nonzero_call",
                                                     {"normalize_to_only_use_kwargs": True}),
    "normalize-args-argument-types": ("normalize_args_typed", "tuple_result", {"normalize_to_only_use_kwargs": False}),
    "normalize-operators-drops-keywords": ("normalize_operators", "keyword_operator", {}),
    "meta-trace-size-of-dim-zero": ("meta_trace", "size_of_dim_zero", {}),
    "meta-trace-leaf-module-state": ("meta_trace", "shape_gate", {}),
}


@pytest.mark.parametrize("known_id", sorted(ENTRIES))
def test_short_focused_search_reaches_the_entry(known_id: str) -> None:
    name, pattern, params = ENTRIES[known_id]
    row = get(name)
    # the row's focus with its other patterns left out, every draw focused
    focus = dataclasses.replace(row.load_focus(), patterns={pattern: 1.0}, share=1.0)
    seen: list[str] = []

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=(Phase.generate,))
    @seed(0)
    @given(focused_specs(focus), st.integers(0, 2**16))
    def search(spec: dict[str, Any], case_seed: int) -> None:
        for outcome in check(Case("random", spec, case_seed), row, params=params):
            seen.append(outcome.known_id or f"{outcome.verdict.value}: {outcome.message[:120]}")
            if outcome.known_id == known_id:
                raise _Reached

    try:
        search()
    except _Reached:
        return
    pytest.fail(f"{known_id} not reached in 25 focused draws; outcomes: {collections.Counter(seen)}")


def test_shrinking_a_focused_draw_leaves_the_gate_and_its_layer() -> None:
    focus = get("meta_trace").load_focus()

    def gate_after_layer(spec: dict[str, Any]) -> bool:
        ops = {n["id"]: n["op"] for n in spec["nodes"]}
        return any(n["op"] == "shape_gate" and ops.get(n["in"][0]) == "linear" for n in spec["nodes"])

    smallest = find(focused_specs(focus), gate_after_layer,
                    settings=settings(max_examples=300, database=None, deadline=None))
    # the planted construct alone: the Linear layer and the gate after it
    assert [n["op"] for n in smallest["nodes"]] == ["linear", "shape_gate"]
    assert len(smallest["inputs"]) == 1
    gm = trace(spec_mod.build(smallest, 0))
    assert CONSTRUCTS["shape_gate"](gm), gm.code
