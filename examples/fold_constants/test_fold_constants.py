"""fold_constants checked with the fx-conform pytest plugin::

    pytest examples/fold_constants --conform-plugin examples.fold_constants.plugin

The plugin module registers the ``fold_constants`` row and its known limitation; the tests
check the pass against the eager module on generated cases and on hand-written ones.
"""

from __future__ import annotations

import torch
import torch.fx
from hypothesis import HealthCheck, given, settings

from conform.case import Case
from examples.fold_constants.passes import fold_constants
from generators.sources import get_source

PLUGIN = "examples.fold_constants.plugin"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=get_source("random").specs())
def test_fold_constants_conforms(conform, spec):
    conform.assert_conforms(Case("random", spec), "fold_constants")


def test_a_chain_becomes_one_operation():
    gm = fold_constants(torch.fx.symbolic_trace(lambda x: ((x + 2) - 3) * 4 * 0.5))
    x = torch.randn(3)
    targets = [n.target.__name__ for n in gm.graph.nodes if n.op == "call_function"]
    assert targets == ["add", "mul"]
    torch.testing.assert_close(gm(x), ((x + 2) - 3) * 4 * 0.5)


def test_an_identity_is_dropped():
    gm = fold_constants(torch.fx.symbolic_trace(lambda x: (x - 1 + 1) * 1))
    assert [n.op for n in gm.graph.nodes] == ["placeholder", "output"]


def test_the_known_limitation_is_reported_as_known(conform):
    case = Case("factory", {"factory": f"{PLUGIN}:identity_then_inplace"})
    outcomes = conform.check(case, "fold_constants")
    assert [(o.verdict.value, o.known_id) for o in outcomes] == [("known", "fold-constants-identity-aliases")]
