"""The split_module row's directed draws: the ``symbolic_size`` pattern records dynamo-style
symbolic metadata while tracing, and a short focused search reaches the known divergence of
a symbol bound in the partition that reads it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _reach import search
from hypothesis import HealthCheck, given, settings

from conform.case import Case
from conform.engine import Prepared, check, prepare
from generators.random_modules import Config, genomes, realize

CONFIG = Config(table=(("symbolic_size", 1.0),), max_nodes=60, dtypes=("float32", "float64"), training=False)


def _symbolic(gm: torch.fx.GraphModule) -> tuple[list[torch.fx.Node], list[torch.fx.Node]]:
    sizes = [n for n in gm.graph.nodes if isinstance(n.meta.get("example_value"), torch.SymInt)]
    tensors = [n for n in gm.graph.nodes if isinstance(n.meta.get("example_value"), torch.Tensor)]
    return sizes, tensors


@settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(genomes(CONFIG))
def test_symbolic_size_records_a_bound_symbol_and_values_of_its_shape(genome: dict[str, Any]) -> None:
    spec = realize(genome, CONFIG)
    if not spec["nodes"]:
        return  # the gene was skipped (where hypothesis shrinks to): nothing planted
    prepared = prepare(Case("random", spec, 0))
    assert isinstance(prepared, Prepared), prepared.message
    gm = prepared.graph_module
    gm.graph.lint()
    sizes, tensors = _symbolic(gm)
    assert sizes and all(n.target == "size" for n in sizes), gm.code
    for node in sizes:
        symbol = node.meta["example_value"].node.expr
        assert symbol.is_Symbol
        # the tensors of that symbolic size: the input it is read from, and its double
        shaped = [t for t in tensors if t.meta["example_value"].shape[0].node.expr == symbol]
        assert len(shaped) >= 2


def test_symbolic_size_split_where_the_symbol_is_bound_is_the_known_divergence() -> None:
    config = Config(table=(("symbolic_size", 1.0),), max_nodes=60, dtypes=("float32",), training=False)
    genome = {"dtype": "float32", "training": False, "inputs": [(1, [2, 3, 0, 0])], "genes": [("symbolic_size", [0] * 8)],
              "output": 0}
    spec = realize(genome, config)
    case = Case("random", spec, 0)
    prepared = prepare(case)
    assert isinstance(prepared, Prepared), prepared.message
    names = [n.name for n in prepared.graph_module.graph.nodes if n.op == "call_function" or n.op == "call_method"]
    # scaled and the size in partition 0, the sum and the addition that reads the size in 1
    reading = {name: 1 for name in names if name.startswith(("sum", "add"))}
    outcomes = check(case, "split_module", params={"partition": reading}, prepared=prepared)
    assert [o.known_id for o in outcomes] == ["split-module-symbol-bound-in-same-partition"], [
        o.describe() for o in outcomes]


@pytest.mark.slow
def test_a_short_focused_search_reaches_the_symbol_bound_entry() -> None:
    wanted = {"split-module-symbol-bound-in-same-partition"}
    reached = search("split_module", wanted, examples=80)
    assert wanted <= reached, reached
