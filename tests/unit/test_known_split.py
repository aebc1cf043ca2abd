"""Precision of the known split_module divergences: each trait holds on its witness and not
on a nearby case without the bug's shape, where a planted bug with the claimed symptom stays
a failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from _known_traits import (
    LIKE_ENTRY,
    assert_unclaimed_failure,
    factory,
    miscompile_module,
    plant,
    raising,
    run,
    trait_holds,
    witness_trait_holds,
)

from conform import known
from conform.outcome import DiffEntry, Mismatch
from conform.witnesses.split import _symbolic_examples
from generators.sources import Built

UPSTREAM = "torch.fx.passes.split_module"
REFERENCE = "reference.split_module"


class NamedInputs(torch.nn.Module):
    def forward(self, x, foo):
        return x + foo


def named_inputs() -> Built:
    return Built(NamedInputs(), (torch.randn(3, 2), torch.randn(3, 2)))


class ReadsParameter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.param = torch.nn.Parameter(torch.randn(2))

    def forward(self, x):
        return x * 2 + self.param


def reads_parameter() -> Built:
    return Built(ReadsParameter(), (torch.randn(2),))


class Plain(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) + 1


def plain() -> Built:
    return Built(Plain(), (torch.randn(4),))


class SymbolFromInput(torch.nn.Module):
    """Like the witness, but the size symbol is bound by an input (as dynamo binds most)."""

    def forward(self, n, x):
        doubled = x * 2
        if isinstance(x, torch.fx.Proxy):
            fake, size = _symbolic_examples(4)
            n.node.meta["example_value"] = size
            x.node.meta["example_value"] = fake
            doubled.node.meta["example_value"] = fake * 2
        return doubled.sum() + n


def symbol_from_input() -> Built:
    return Built(SymbolFromInput(), (4, torch.randn(4)))


class WriteInOnePartition(torch.nn.Module):
    """Every access of the memory relu_ writes is in the writer's partition; the next
    partition reads only a fresh value."""

    def forward(self, x):
        y = x * 1
        s = torch.sigmoid(y)
        y.relu_()
        return torch.cos(s + y)


def write_in_one_partition() -> Built:
    return Built(WriteInOnePartition(), (torch.linspace(-1.5, 1.0, 6),))


class WriterAppearsFirst(torch.nn.Module):
    """Split with cos and relu_ together, their partition appears before sigmoid's but
    sigmoid must read x before relu_ writes it."""

    def forward(self, x):
        c = torch.cos(x)
        s = torch.sigmoid(x)
        x.relu_()
        return c + s + x


def writer_appears_first() -> Built:
    return Built(WriterAppearsFirst(), (torch.linspace(-1.5, 1.0, 6),))


_NO_GRAD_SPLIT = {"_set_grad_enabled": 0, "sigmoid": 0, "relu": 1, "_set_grad_enabled_1": 1, "mul": 1}


def _witness_case(builder: str):
    return factory("conform.witnesses.split", builder)


def _here(builder: str):
    return factory(__name__, builder)


# entry -> (nearby case, its parameters): the same transform, without the bug's shape
NEARBY: dict[str, tuple[Any, dict[str, Any]]] = {
    # named inputs instead of **kwargs
    "split-module-kwargs-keep-node-name-crash": (
        _here("named_inputs"), {"partition": {}, "keep_original_node_name": True}),
    "split-module-kwargs-keep-node-name-signature": (
        _here("named_inputs"), {"partition": {}, "keep_original_node_name": True}),
    "split-module-kwargs-keep-node-name-syntax": (
        _here("named_inputs"), {"partition": {}, "keep_original_node_name": True}),
    # the parameter is read by a partition, not returned as is
    "split-module-keep-order-returned-attribute": (
        _here("reads_parameter"), {"partition": {}, "keep_original_order": True}),
    # the colliding modules are called from different partitions
    "split-module-flattened-target-collision": (
        _witness_case("flatten_collision"), {"partition": {"a_b_c_1": 1, "sub": 1}}),
    # the grad-mode region without an affix
    "split-module-affix-with-regions": (_witness_case("no_grad_block"), {"partition": _NO_GRAD_SPLIT}),
    # ids below -1 without a region
    "split-module-negative-ids-with-regions": (_here("plain"), {"partition": {"relu": -3, "add": -2}}),
    # the symbol is bound by an input, which no partition computes
    "split-module-symbol-bound-in-same-partition": (
        _here("symbol_from_input"), {"partition": {"sum_1": 1, "add": 1}}),
    # the in-place write and every access of its memory stay in partition 0
    "split-module-inplace-order": (_here("write_in_one_partition"), {"partition": {"cos": 1}}),
}


def _miscompiling_split(monkeypatch: pytest.MonkeyPatch) -> None:
    from reference.split_module import split_module

    def planted(*args: Any, **kwargs: Any) -> Any:
        return miscompile_module(split_module(*args, **kwargs))

    plant(monkeypatch, REFERENCE, "split_module", planted)


def _upstream_raises(exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: plant(monkeypatch, UPSTREAM, "split_module", raising(exc))


# entry -> (planting, the text of the claimed symptom the planted bug produces)
PLANTED: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str | None]] = {
    "split-module-kwargs-keep-node-name-crash": (
        _miscompiling_split, "transformed modules compute different outputs"),
    "split-module-kwargs-keep-node-name-signature": (
        _miscompiling_split, "transformed modules compute different outputs"),
    "split-module-kwargs-keep-node-name-syntax": (
        _upstream_raises(SyntaxError("non-default argument follows default argument")), "SyntaxError"),
    "split-module-keep-order-returned-attribute": (_upstream_raises(KeyError("param")), "KeyError"),
    "split-module-flattened-target-collision": (
        _miscompiling_split, "transformed modules compute different outputs"),
    "split-module-affix-with-regions": (_upstream_raises(KeyError("0")), "KeyError"),
    "split-module-negative-ids-with-regions": (
        _upstream_raises(AssertionError(
            "autocast or set_grad_enabled require monotonically increasing partitions: highest: -1, "
            "this node's: -3")),
        None),
    "split-module-symbol-bound-in-same-partition": (
        _upstream_raises(RuntimeError("cycle exists between partitions!")), None),
    "split-module-inplace-order": (_miscompiling_split, "transformed modules compute different outputs"),
}

ENTRIES = sorted(NEARBY)


def test_every_split_entry_has_a_trait_and_a_nearby_case() -> None:
    ids = {e.id for e in known.KNOWN if e.transform == "split_module"}
    assert ids == set(NEARBY) == set(PLANTED)
    assert all(known.by_id()[i].match.case for i in ids)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_trait_holds_on_the_witness(entry_id: str) -> None:
    assert witness_trait_holds(entry_id)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_trait_does_not_hold_on_a_nearby_case(entry_id: str) -> None:
    case, params = NEARBY[entry_id]
    assert not trait_holds(entry_id, case, params)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_planted_bug_on_a_nearby_case_stays_a_failure(entry_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case, params = NEARBY[entry_id]
    planting, symptom_text = PLANTED[entry_id]
    planting(monkeypatch)
    outcomes = run(case, "split_module", params)
    assert_unclaimed_failure(outcomes, entry_id, message=symptom_text or LIKE_ENTRY)


class VarArgs(torch.nn.Module):
    def forward(self, x, *args):
        return x + args[0]


def varargs() -> Built:
    return Built(VarArgs(), (torch.randn(3, 2), torch.randn(3, 2)))


def test_variadic_positional_forward_is_claimed_with_every_symptom() -> None:
    # forward(x, *args) split with kept node names: upstream's parent binds 'args' to the one
    # extra tensor and indexes it, a silent miscompile of the same bug
    outcomes = run(_here("varargs"), "split_module", {"partition": {}, "keep_original_node_name": True})
    assert {o.symptom.value for o in outcomes} >= {"eager-mismatch", "impl-divergence"}
    assert all(o.known_id and o.known_id.startswith("split-module-kwargs-keep-node-name")
               for o in outcomes), [o.describe() for o in outcomes]


def test_reference_miscompile_on_a_collision_is_not_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    # on the witness itself, a reference that goes wrong is reported as the reference's own
    # eager mismatch: the entry claims upstream's symptoms only
    _miscompiling_split(monkeypatch)
    outcomes = run(_witness_case("flatten_collision"), "split_module", {"partition": {}})
    wrong = [o for o in outcomes if o.symptom and o.symptom.value == "eager-mismatch" and "reference" in o.message]
    assert wrong and all(o.verdict.value == "fail" for o in wrong), [o.describe() for o in outcomes]


@pytest.mark.parametrize("params", [
    # add reads y after relu_ but also reads mul's partition: data flow already orders them
    pytest.param({"partition": {"add": 1}}, id="order-fixed-by-data-flow"),
    # first appearance (0, 1, 2) is the graph's order of the accesses
    pytest.param({"partition": {"sigmoid": 1, "relu_": 2, "add": 3}, "keep_original_order": True},
                 id="original-order-follows-the-write"),
])
def test_inplace_order_trait_skips_orders_upstream_keeps(params: dict[str, Any]) -> None:
    assert not trait_holds("split-module-inplace-order", _witness_case("read_then_write"), params)


@pytest.mark.parametrize("params", [
    pytest.param({"partition": {"relu_": 1, "sigmoid": 2}}, id="reader-after-write-unordered"),
    pytest.param({"partition": {"sigmoid": 1, "relu_": 2, "add": 1}}, id="partition-on-both-sides"),
])
def test_inplace_order_trait_holds_where_upstream_may_reorder(params: dict[str, Any]) -> None:
    assert trait_holds("split-module-inplace-order", _witness_case("read_then_write"), params)


def test_inplace_order_with_original_order_is_claimed() -> None:
    params = {"partition": {"cos": 1, "sigmoid": 0, "relu_": 1, "add": 2, "add_1": 2},
              "keep_original_order": True, "partition_affix": "p"}
    assert trait_holds("split-module-inplace-order", _here("writer_appears_first"), params)
    outcomes = run(_here("writer_appears_first"), "split_module", params)
    assert {o.symptom.value for o in outcomes} >= {"eager-mismatch", "impl-divergence"}
    assert all(o.known_id == "split-module-inplace-order" for o in outcomes), [o.describe() for o in outcomes]


def test_inplace_order_claims_the_reference_refusal_and_upstream_miscompile() -> None:
    # partition 1 reads y before relu_ (sigmoid) and after it (add): the reference refuses,
    # upstream silently reads the updated y in sigmoid
    outcomes = run(_witness_case("read_then_write"), "split_module",
                   {"partition": {"sigmoid": 1, "relu_": 2, "add": 1}})
    assert {o.stage.value for o in outcomes} >= {"transform-reference", "compare"}
    assert all(o.known_id == "split-module-inplace-order" for o in outcomes), [o.describe() for o in outcomes]


def test_collision_is_claimed_on_its_qualname_map_lines_alone() -> None:
    # a structural outcome whose only lines are the partition's qualname map (upstream maps
    # the flattened name to one module, the reference adds a suffixed entry for the other)
    entry = known.by_id()["split-module-flattened-target-collision"]
    witness = known.load_witness(entry)
    structural = [o for o in run(witness.case, entry.transform, witness.params) if o.diffs
                  and o.diffs[0].what == "fingerprint"]
    assert structural, "the witness shows a structural difference"
    detail = ("fingerprint.qualname_map.submod_1.v3_k_x: v3_k.x vs v3.k_x\n"
              "fingerprint.qualname_map.submod_1.v3_k_x_1: only on the right: v3_k.x")
    entries = [DiffEntry("fingerprint.qualname_map.submod_1.v3_k_x", "v3_k.x", "v3.k_x"),
               DiffEntry("fingerprint.qualname_map.submod_1.v3_k_x_1", None, "v3_k.x")]
    only_map = dataclasses.replace(structural[0], known_id=None,
                                   diffs=[Mismatch("upstream", "reference", "fingerprint", detail, entries=entries)])
    assert entry.matches(only_map)
    # the same lines on a case without the collision's shape stay unclaimed
    no_trait = dataclasses.replace(only_map, notes={**only_map.notes, "traits": []})
    assert not entry.matches(no_trait)
    # a map that differs without a suffixed entry is another difference
    other = dataclasses.replace(only_map, diffs=[Mismatch(
        "upstream", "reference", "fingerprint", "fingerprint.qualname_map.submod_1.fc2: fc2 vs fc3",
        entries=[DiffEntry("fingerprint.qualname_map.submod_1.fc2", "fc2", "fc3")])])
    assert not entry.matches(other)
