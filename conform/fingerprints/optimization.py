"""Structural fingerprints of the optimization family.

* :func:`modules`: which module calls remain (qualified name and class, in graph order),
  which module calls of the traced case disappeared (the folded batch norms, the removed
  dropouts), and how many MKLDNN layout conversions were inserted;
* :func:`merged_matmuls`: which matmuls were merged (each group as its shared right operand
  and its left operands) and which ``torch.matmul`` calls stayed;
* :func:`validation`: the applied value of the validator driver (expression, z3 term, value).

Operands are named by node name, or ``attr:<target>`` for attribute reads (both
implementations re-read attributes through nodes of their own).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from conform.adapters import Applied


def _module_calls(gm: torch.fx.GraphModule) -> list[list[str]]:
    calls = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls.append([node.target, type(gm.get_submodule(node.target)).__name__])
    return calls


def modules(applied: Applied) -> dict[str, Any]:
    """Module calls kept, module calls gone, layout conversions."""
    result = applied.runnable
    before = {n.target for n in applied.subject.graph_module.graph.nodes if n.op == "call_module"}
    if not isinstance(result, torch.fx.GraphModule):
        return {"calls": None, "gone": [], "conversions": {}}
    calls = _module_calls(result)
    kept = {target for target, _ in calls}
    conversions: dict[str, int] = {}
    for node in result.graph.nodes:
        if node.op == "call_method" and node.target in ("to_mkldnn", "to_dense"):
            conversions[node.target] = conversions.get(node.target, 0) + 1
    return {"calls": calls, "gone": sorted(before - kept), "conversions": conversions}


def _operand(node: Any) -> str:
    if isinstance(node, torch.fx.Node):
        return f"attr:{node.target}" if node.op == "get_attr" else node.name
    return repr(node)


def _merge_sites(gm: torch.fx.GraphModule) -> tuple[list[list[Any]], set[torch.fx.Node]]:
    """Merged groups as ``[rhs, [lhs, ...]]``, and the matmul nodes that belong to them.

    Upstream spells a merge ``split_result_tensors(matmul(cat(lhs), rhs), lhs)``; the
    reference spells it ``merged_matmul(lhs, rhs)``.
    """
    groups: list[list[Any]] = []
    plumbing: set[torch.fx.Node] = set()
    for node in gm.graph.nodes:
        name = getattr(node.target, "__name__", "") if node.op == "call_function" else ""
        if name == "split_result_tensors":
            product, lhs = node.args[0], node.args[1]
            plumbing.add(product)
            groups.append([_operand(product.args[1]), [_operand(x) for x in lhs]])
        elif name == "merged_matmul":
            lhs, rhs = node.args[0], node.args[1]
            groups.append([_operand(rhs), [_operand(x) for x in lhs]])
    return groups, plumbing


def merged_matmuls(applied: Applied) -> dict[str, Any]:
    """Merged groups (sorted) and the names of the ``torch.matmul`` calls left alone."""
    result = applied.runnable
    if not isinstance(result, torch.fx.GraphModule):
        return {"merged": None, "kept": []}
    groups, plumbing = _merge_sites(result)
    kept = sorted(
        n.name
        for n in result.graph.nodes
        if n.op == "call_function" and n.target is torch.matmul and n not in plumbing
    )
    return {"merged": sorted(groups), "kept": kept}


def validation(applied: Applied) -> Any:
    """The validator driver's summary, as it is."""
    return applied.value
