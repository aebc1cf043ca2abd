"""Traits never lean on the reference: no trait module imports ``reference/``, the in-place
traits hold on their witnesses with the reference out of reach or wrong, and the effects
they observe (:mod:`conform.traits._effects`) are what the ops do."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from _known_traits import factory, trait_holds, witness_trait_holds

from conform.traits._effects import LOOK, READ, RESHAPE, WRITE, observe, order_edges
from generators.sources import Built

ROOT = Path(__file__).resolve().parents[2]
TRAITS = ROOT / "conform" / "traits"

# the entries whose traits ask which memory a node writes in place
INPLACE_ENTRIES = ("split-module-inplace-order", "partition-inplace-order", "merge-matmul-mutation-between")


def _in_fresh_interpreter(script: str) -> Any:
    """Run ``script`` in a new interpreter on this checkout; it prints one JSON value."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_trait_module_imports_reference() -> None:
    modules = sorted(f"conform.traits.{p.stem}" for p in TRAITS.glob("*.py") if p.stem != "__init__")
    assert {"conform.traits.split", "conform.traits.partition", "conform.traits.optimization",
            "conform.traits._effects"} <= set(modules)
    loaded = _in_fresh_interpreter(f"""
        import importlib, json, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(m for m in sys.modules if m == "reference" or m.startswith("reference."))))
    """)
    assert loaded == []


def test_inplace_traits_hold_on_their_witnesses_with_the_reference_unimportable() -> None:
    # evaluating a trait must not reach the reference either (a lazy import, an
    # Implementation("reference")): with every reference import refused they still decide
    held = _in_fresh_interpreter(f"""
        import json, sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name == "reference" or name.startswith("reference."):
                    raise ImportError("reference is out of reach: " + name)

        sys.meta_path.insert(0, Refuse())
        from conform import known
        from conform.engine import prepare
        from conform.registry import load

        held = {{}}
        for entry_id in {INPLACE_ENTRIES!r}:
            entry = known.by_id()[entry_id]
            witness = known.load_witness(entry)
            prepared = prepare(witness.case)
            held[entry_id] = bool(load(entry.match.case)(prepared.graph_module, prepared.built, witness.params))
        print(json.dumps(held))
    """)
    assert held == dict.fromkeys(INPLACE_ENTRIES, True)


def _blind_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference whose effect analysis sees no in-place write at all, wherever its
    functions are bound (a ``from reference... import`` copies the name into the importer)."""
    import reference._split_effects as effects
    import reference.merge_matmul as merge

    planted = {
        id(effects.partition_order_edges): lambda *args, **kwargs: {},
        id(merge._mutated): lambda node: None,
    }
    for module in list(sys.modules.values()):
        for name, value in list(vars(module).items() if module is not None else ()):
            if id(value) in planted:
                monkeypatch.setattr(module, name, planted[id(value)])


@pytest.mark.parametrize("entry_id", INPLACE_ENTRIES)
def test_inplace_traits_hold_when_the_reference_misses_every_write(
        monkeypatch: pytest.MonkeyPatch, entry_id: str) -> None:
    _blind_reference(monkeypatch)
    assert witness_trait_holds(entry_id)


@pytest.mark.parametrize(("params", "holds"), [
    ({"partition": {"relu_": 1, "sigmoid": 2}}, True),
    ({"partition": {"sigmoid": 1, "relu_": 2, "add": 1}}, True),
    ({"partition": {"add": 1}}, False),
])
def test_split_trait_follows_the_graph_not_the_blind_reference(
        monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], holds: bool) -> None:
    _blind_reference(monkeypatch)
    case = factory("conform.witnesses.split", "read_then_write")
    assert trait_holds("split-module-inplace-order", case, params) is holds


# --- what the run observes -----------------------------------------------------------------------


def _kinds(module: torch.nn.Module, *args: Any) -> dict[str, set[str]]:
    """Per node name, the kinds of its accesses of memory on a run of ``module``."""
    effects = observe(torch.fx.symbolic_trace(module), Built(module, args))
    kinds: dict[str, set[str]] = {}
    for events in effects.accesses.values():
        for access in events:
            kinds.setdefault(access.node.name, set()).add(access.kind)
    return kinds


class _ReadViewWrite(torch.nn.Module):
    def forward(self, x):
        y = x * 1
        v = y.view(2, 3)
        s = torch.sigmoid(y)
        y.relu_()
        return s + v


def test_writes_reads_and_views_are_told_apart() -> None:
    seen = _kinds(_ReadViewWrite(), torch.randn(2, 3))
    assert seen == {"mul": {READ}, "view": {LOOK}, "sigmoid": {READ}, "relu_": {WRITE}, "add": {READ},
                    "output": {READ}}


class _Writers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.act = torch.nn.ReLU(inplace=True)
        self.norm = torch.nn.BatchNorm1d(3)

    def forward(self, x, flag):
        a = x + 1
        F.relu(a, inplace=flag)  # a flag only known when the graph runs
        b = x * 2
        self.act(b)
        c = x - 1
        torch.neg(x, out=c)
        d = x / 2
        d.t_()
        return self.norm(x), a, b, c, d


def test_every_kind_of_in_place_write_is_seen() -> None:
    module = _Writers().train()
    gm = torch.fx.symbolic_trace(module)
    effects = observe(gm, Built(module, (torch.randn(4, 3), True)))
    written = {node.name for nodes in effects.writers().values() for node in nodes}
    assert {"relu", "act", "neg", "t_", "norm"} <= written  # norm: its running statistics
    kinds = {a.node.name: a.kind for events in effects.accesses.values() for a in events if a.node.name == "t_"}
    assert kinds == {"t_": RESHAPE}
    # the run used copies: the module's statistics and the graph are as they were
    assert torch.equal(module.norm.running_mean, torch.zeros(3))


def test_a_flag_off_writes_nothing() -> None:
    module = _Writers().eval()
    gm = torch.fx.symbolic_trace(module)
    effects = observe(gm, Built(module, (torch.randn(4, 3), False)))
    written = {node.name for nodes in effects.writers().values() for node in nodes}
    assert "relu" not in written and "norm" not in written


def test_an_item_assignment_writes_its_container() -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    c = graph.call_function(operator.sub, (x, 1))
    graph.call_function(operator.setitem, (c, 0, 0.0))
    graph.output(graph.call_function(operator.mul, (c, 2)))
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)
    effects = observe(gm, Built(gm, (torch.randn(3),)))
    assert [n.name for nodes in effects.writers().values() for n in nodes] == ["setitem"]


def test_order_edges_follow_graph_order_across_groups() -> None:
    module = _ReadViewWrite()
    gm = torch.fx.symbolic_trace(module)
    effects = observe(gm, Built(module, (torch.randn(2, 3),)))
    nodes = {n.name: n for n in gm.graph.nodes}
    owner = {nodes["mul"]: 0, nodes["view"]: 1, nodes["sigmoid"]: 2, nodes["relu_"]: 3, nodes["add"]: 4}
    # sigmoid reads y before relu_ writes it, add reads it (through the view v) after; making
    # the view only looks, and mul reads x, which nothing writes
    assert order_edges(effects, owner) == {(2, 3), (3, 4)}
    assert order_edges(effects, {**owner, nodes["sigmoid"]: 3, nodes["add"]: 3}) == set()
    assert order_edges(effects, {**owner, nodes["add"]: 2}) == {(2, 3), (3, 2)}


class _MergedThenActivatedInPlace(torch.nn.Module):
    def forward(self, a, b, w):
        first = torch.matmul(a, w)
        second = torch.matmul(b, w)
        F.relu(a, inplace=True)  # an update by keyword flag, not by a trailing underscore
        return first, second, a


def merged_then_activated_in_place() -> Built:
    return Built(_MergedThenActivatedInPlace(), (torch.randn(2, 4), torch.randn(2, 4), torch.randn(4, 3)))


def test_merge_trait_counts_an_update_by_keyword_flag() -> None:
    case = factory(__name__, "merged_then_activated_in_place")
    assert trait_holds("merge-matmul-mutation-between", case, {})
