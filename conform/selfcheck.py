"""Planted bugs: transform rows whose reference side is deliberately wrong in a known way.

The engine must find each one, classify it with the right stage and symptom, and (in a
campaign) shrink the case that shows it. The project's tests use these rows to check the
harness itself; a user can run them to see what a finding looks like::

    conform run --source samples  # a clean run
    python -c "from conform.selfcheck import demo; demo()"  # the same cases with planted bugs

Each planted row wraps a real transform (``split_module`` unless stated) so the upstream
side stays correct.
"""

from __future__ import annotations

import operator
import time
from typing import Any

import torch
import torch.fx

from conform.adapters import Applied, Subject, drive_split
from conform.implementations import Implementation
from conform.plugins import hookimpl
from conform.registry import TransformSpec
from generators.sources import Built, trust_factory


def _split(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    return drive_split(impl, row, subject, params)


def _graphs(applied: Applied) -> list[torch.fx.GraphModule]:
    return [gm for gm in applied.graphs if isinstance(gm, torch.fx.GraphModule)]


def add_becomes_sub(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side: the first addition in the split module subtracts instead."""
    applied = _split(impl, row, subject, params)
    if impl.name != "reference":
        return applied
    for gm in _graphs(applied):
        for node in gm.graph.nodes:
            if node.op == "call_function" and node.target in (operator.add, torch.add):
                node.target = operator.sub
                gm.recompile()
                return applied
    return applied


def crash_on_mul(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side raises when the graph multiplies."""
    if impl.name == "reference" and any(
        n.op == "call_function" and n.target in (operator.mul, torch.mul)
        for n in subject.graph_module.graph.nodes
    ):
        raise RuntimeError("planted: reference cannot split a multiplication")
    return _split(impl, row, subject, params)


def upstream_crash(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Upstream side raises on every case (a stand-in for an upstream bug)."""
    if impl.name == "upstream":
        raise KeyError("planted: upstream loses track of a node")
    return _split(impl, row, subject, params)


def sleeps(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side runs past the row's time limit."""
    if impl.name == "reference":
        time.sleep(row.timeout_s * 4)
    return _split(impl, row, subject, params)


def dangling_node(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side leaves a node that uses a value from another graph (fails lint)."""
    applied = _split(impl, row, subject, params)
    if impl.name == "reference":
        stranger = torch.fx.Graph().placeholder("stranger")
        gm = _graphs(applied)[0]
        out = next(n for n in gm.graph.nodes if n.op == "output")
        with gm.graph.inserting_before(out):
            gm.graph.call_function(operator.neg, (stranger,))
    return applied


def different_errors(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Both sides raise, with different exception types."""
    if impl.name == "reference":
        raise ValueError("planted: reference rejects the case")
    raise TypeError("planted: upstream rejects the case")


def same_errors(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Both sides raise the same exception type: conformant."""
    raise RuntimeError(f"planted: {impl.name} rejects the case")


class _MutatesInput(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner(*args, **kwargs)
        first = next((a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
        if first is not None:
            first.add_(1.0)
        return result


def mutates_input(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side's module adds one to its first floating-point input in place."""
    applied = _split(impl, row, subject, params)
    if impl.name == "reference" and applied.runnable is not None:
        applied.runnable = _MutatesInput(applied.runnable)
    return applied


def wrong_on_cuda(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side miscompiles (first add becomes sub) only when the subject is on CUDA."""
    on_cuda = any(isinstance(a, torch.Tensor) and a.is_cuda for a in subject.inputs)
    if on_cuda:
        return add_becomes_sub(impl, row, subject, params)
    return _split(impl, row, subject, params)


def _pigeonhole(n: int) -> None:
    """Ask z3 whether ``n`` pigeons fit in ``n - 1`` holes: unsatisfiable, and exponentially
    hard for the solver, which stays in native code the whole time."""
    import z3

    p = [[z3.Bool(f"p{i}_{j}") for j in range(n - 1)] for i in range(n)]
    solver = z3.Solver()
    for i in range(n):
        solver.add(z3.Or(p[i]))
    for j in range(n - 1):
        for i in range(n):
            for k in range(i + 1, n):
                solver.add(z3.Or(z3.Not(p[i][j]), z3.Not(p[k][j])))
    solver.check()


def solver_spins(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Reference side runs a z3 solve that takes minutes and never returns to Python."""
    if impl.name == "reference":
        _pigeonhole(13)
    return _split(impl, row, subject, params)


def tags_impl(impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]) -> Applied:
    """Both sides correct, but the structural fingerprint names the implementation."""
    applied = _split(impl, row, subject, params)
    applied.value = impl.name
    return applied


def fingerprint_value(applied: Applied) -> Any:
    return {"value": applied.value}


def _planted(name: str, description: str, *, timeout_s: float = 60.0, fingerprint: str | None = None) -> TransformSpec:
    return TransformSpec(
        name=f"planted_{name}",
        target="split_module:split_module",
        convention="custom",
        driver=f"conform.selfcheck:{name}",
        description=description,
        params="generators.params.split:split_params",
        fingerprint=fingerprint,
        timeout_s=timeout_s,
    )


PLANTED: dict[str, TransformSpec] = {
    row.name: row
    for row in (
        _planted("add_becomes_sub", "reference turns the first add into a sub"),
        _planted("crash_on_mul", "reference raises on graphs with a multiplication"),
        _planted("upstream_crash", "upstream raises on every case"),
        _planted("sleeps", "reference runs past its time limit", timeout_s=0.5),
        _planted("dangling_node", "reference leaves a node from another graph"),
        _planted("different_errors", "both raise, different exception types"),
        _planted("same_errors", "both raise the same exception type"),
        _planted("mutates_input", "reference's module mutates its first input"),
        _planted("tags_impl", "fingerprints differ", fingerprint="conform.selfcheck:fingerprint_value"),
        _planted("wrong_on_cuda", "reference miscompiles only on CUDA"),
        _planted("solver_spins", "reference spins in a z3 solve, in native code", timeout_s=2.0),
    )
}


class _Untraceable(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: symbolic_trace cannot follow it
            return x + 1
        return x - 1


def untraceable() -> Built:
    return Built(_Untraceable(), (torch.ones(3),))


def broken_factory() -> Built:
    raise RuntimeError("planted: the case cannot be built")


# the engine's own tests build these two by name through the factory source
trust_factory(f"{__name__}:untraceable")
trust_factory(f"{__name__}:broken_factory")


def demo() -> None:
    """Print what each planted bug looks like on the ``samples`` source."""
    from conform.case import Case
    from conform.engine import check

    case = Case("samples", {"sample": "linear_relu"})
    for row in PLANTED.values():
        for outcome in check(case, row, params={"partition": {}}):
            print(outcome.describe(), end="\n\n")


@hookimpl
def conform_transforms() -> list[TransformSpec]:
    """As a plugin (``--plugin conform.selfcheck``), this module adds the planted rows."""
    return list(PLANTED.values())
