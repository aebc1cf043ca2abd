"""Every reference module exports exactly upstream's public names, and every one of them is
exercised: named by a registry row, a driver or a test.

Upstream's public names are its module's ``__all__`` where it has one, else the functions
and classes the module defines at its top level without a leading underscore. The last tests
exercise the names no other test reaches, on both implementations.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import operator
from pathlib import Path

import pytest
import sympy
import torch
import torch.fx

from conform.implementations import UPSTREAM_MODULES, Implementation
from conform.registry import TRANSFORMS

ROOT = Path(__file__).resolve().parents[2]


def upstream_public_names(basename: str) -> set[str]:
    module = importlib.import_module(UPSTREAM_MODULES[basename])
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == module.__name__}


@pytest.mark.parametrize("basename", sorted(UPSTREAM_MODULES))
def test_reference_exports_upstream_public_names(basename: str) -> None:
    reference = importlib.import_module(f"reference.{basename}")
    assert hasattr(reference, "__all__"), f"reference/{basename}.py has no __all__"
    assert sorted(reference.__all__) == sorted(upstream_public_names(basename))
    for name in reference.__all__:
        assert hasattr(reference, name), f"reference.{basename}.__all__ names {name!r}, which it does not define"


def _names_used() -> set[str]:
    """Every identifier the tests and the drivers name, and every row's entry point."""
    used = {row.target.partition(":")[2].split(".")[0] for row in TRANSFORMS}
    for path in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "conform" / "drivers").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.name.rpartition(".")[2])
    return used


@pytest.mark.parametrize("basename", sorted(UPSTREAM_MODULES))
def test_every_public_name_is_exercised(basename: str) -> None:
    used = _names_used()
    missing = sorted(upstream_public_names(basename) - used)
    assert not missing, f"reference.{basename}: no row, driver or test exercises {missing}"


class _ThreeOps(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = torch.relu(x) + y
        b = a * 2
        return b - x


@pytest.mark.parametrize("affix", [None, "gpu"])
def test_split_module_simple(impl: Implementation, affix: str | None) -> None:
    gm = torch.fx.symbolic_trace(_ThreeOps())
    ops = [n for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")]
    assignment = {node: (0 if i < 2 else 1) for i, node in enumerate(ops)}
    split = impl.split_module.split_module_simple(gm, assignment, partition_affix=affix)
    prefix = f"submod_{affix}_" if affix else "submod_"
    assert [n.target for n in split.graph.nodes if n.op == "call_module"] == [f"{prefix}0", f"{prefix}1"]
    first = getattr(split, f"{prefix}0")
    assert [n.target for n in first.graph.nodes if n.op == "call_function"] == [torch.relu, operator.add]
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(split(x, y), _ThreeOps()(x, y))


def test_dag_nodes_and_partition_result(impl: Implementation) -> None:
    ap = impl.accelerator_partitioner
    gm = torch.fx.symbolic_trace(_ThreeOps())
    node = next(n for n in gm.graph.nodes if n.op == "call_function")
    dag = ap.DAG()
    dag.create_node(node, [], [node], [0, 1], 64)
    (made,) = dag.nodes
    assert isinstance(made, ap.DAGNode) and str(made) == str(node)
    assert (made.submodule_node, made.input_nodes, made.output_nodes, made.logical_device_ids, made.size_bytes) == (
        node, [], [node], [0, 1], 64)
    result = ap.PartitionResult(dag=dag, module_with_submodules=gm)
    assert result == (dag, gm) and result.dag is dag and result.module_with_submodules is gm


@pytest.mark.filterwarnings("ignore:Could not compute metadata")  # x.T has no meta kernel to call
def test_meta_attribute(impl: Implementation) -> None:
    mt = impl.meta_tracer
    seen: list[type] = []

    class Reads(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            attribute = x.T
            seen.append(type(attribute))
            return x.relu() + attribute.T

    graph = mt.MetaTracer().trace(Reads(), meta_args={"x": torch.zeros(2, 3, device="meta")})
    assert seen == [mt.MetaAttribute]
    getattrs = [n for n in graph.nodes if n.op == "call_function" and n.target is getattr]
    assert [n.args[1] for n in getattrs] == ["T", "T"]
    relu = next(n for n in graph.nodes if n.op == "call_method" and n.target == "relu")
    assert relu.args[0].op == "placeholder"


def test_bisect_validation_exception(impl: Implementation) -> None:
    v = impl.validator
    s0, s1 = (sympy.Symbol(f"s{i}", integer=True, positive=True) for i in range(2))
    tv = v.TranslationValidator()
    tv.add_var(s0, int)
    tv.add_var(s1, int)
    tv.add_source_expr(tv.z3var(s0) > tv.z3var(s1))
    tv.add_target_expr(sympy.Gt(2 * s0, s1))
    with pytest.raises(v.ValidationException) as info:
        tv.validate()
    gm = torch.fx.symbolic_trace(_ThreeOps())
    node = next(n for n in gm.graph.nodes if n.op == "call_function")
    bisect = v.BisectValidationException(info.value, sympy.Gt(2 * s0, s1), "evaluating", node)
    text = str(bisect)
    assert text.startswith("translation validation failed when evaluating: 2*s0 > s1\n\n")
    assert f"Failure occurred while running node:\n    {node.format_node()}" in text
    assert info.value.details in text
    assert isinstance(bisect, Exception)
