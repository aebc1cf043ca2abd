"""A plugin contributing an oracle of its own (used by tests/unit/test_plugin_oracles.py):
every transformed module's outputs must be finite where the eager module's are."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree

from conform.outcome import Mismatch, Stage, Symptom
from conform.plugins import hookimpl


def _nonfinite(value: Any) -> list[str]:
    leaves, _ = pytree.tree_flatten_with_path(value)
    return ["output" + "".join(str(p) for p in path) for path, leaf in leaves
            if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and not torch.isfinite(leaf).all()]


def finite_outputs(findings: Any, sides: dict[str, Any]) -> list[str]:
    """Report, at place ``finite:<impl>``, a side whose module returns a non-finite value
    where the eager module's is finite (here: every side, as the test's planted row returns
    ``inf``)."""
    ran = []
    eager = set(_nonfinite(findings.prepared.expected.outputs))
    for impl, side in sides.items():
        if side.execution is None or not side.execution.ok:
            continue
        ran.append(f"finite:{impl}")
        bad = [path for path in _nonfinite(side.execution.outputs) if path not in eager]
        if bad:
            findings.add(Stage.COMPARE, Symptom.METAMORPHIC, f"{impl}'s module returns a non-finite value",
                         side=impl, place=f"finite:{impl}",
                         diffs=[Mismatch("eager", impl, "outputs", ", ".join(bad))])
    return ran


@hookimpl
def conform_oracles() -> list[Any]:
    return [finite_outputs]


def overflow(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A broken pass for the oracle to catch: the module's tensor output is scaled to infinity."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    result = output.args[0]
    if isinstance(result, torch.fx.Node):
        with gm.graph.inserting_before(output):
            scaled = gm.graph.call_function(torch.mul, (result, float("inf")))
        output.args = (scaled,)
        gm.recompile()
    return gm
