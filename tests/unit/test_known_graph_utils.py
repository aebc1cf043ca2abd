"""Precision of the known divergences of the graph utilities (node sizes, getitem types): each
trait holds on its witness and not on a nearby case without the bug's shape, where a planted
bug with the claimed symptom stays a failure."""

from __future__ import annotations

import operator
import typing
from typing import Any

import pytest
import torch
from _known_traits import (
    LIKE_ENTRY,
    assert_unclaimed_failure,
    factory,
    plant,
    raising,
    run,
    trait_holds,
    witness_trait_holds,
)

from conform import known
from conform.witnesses.graph_utils import Pair, sliced_bare_list, sliced_list  # noqa: F401 - factories of the cases below
from generators.sources import Built


class SingleTensorReduction(torch.nn.Module):
    def forward(self, x):
        return x.amax(dim=1) + 1


def single_tensor_reduction() -> Built:
    return Built(SingleTensorReduction(), (torch.randn(3, 5),))


class TypedPair(torch.nn.Module):
    def forward(self, pair):
        return pair[0] + 1


TypedPair.forward.__annotations__["pair"] = tuple[torch.Tensor, torch.Tensor]


def typed_pair() -> Built:
    return Built(TypedPair(), ((torch.randn(2), torch.randn(2)),))


class IndexedTriple(torch.nn.Module):
    def forward(self, triple):
        return triple[1] * triple[2]


IndexedTriple.forward.__annotations__["triple"] = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def indexed_triple() -> Built:
    return Built(IndexedTriple(), ((torch.randn(2), torch.randn(2), torch.randn(2)),))


class IndexedNamedTuple(torch.nn.Module):
    def forward(self, pair):
        return pair[0] - pair[1]


IndexedNamedTuple.forward.__annotations__["pair"] = Pair


def indexed_namedtuple() -> Built:
    return Built(IndexedNamedTuple(), (Pair(torch.randn(2), torch.randn(2)),))


class SlicedVariadicTuple(torch.nn.Module):
    def forward(self, items):
        rest = items[1:]
        return rest[0] * 2


SlicedVariadicTuple.forward.__annotations__["items"] = typing.Tuple[torch.Tensor, ...]  # noqa: UP006


def sliced_variadic_tuple() -> Built:
    return Built(SlicedVariadicTuple(), ((torch.randn(2), torch.randn(2)),))


class IndexedList(torch.nn.Module):
    def forward(self, seq):
        return seq[1] * 2


IndexedList.forward.__annotations__["seq"] = list[torch.Tensor]


def indexed_list() -> Built:
    return Built(IndexedList(), ([torch.randn(2), torch.randn(2)],))


def types_getitems_as_lists(graph: torch.fx.Graph) -> None:
    """A planted upstream that annotates every getitem as a list of tensors."""
    for node in graph.nodes:
        if node.op == "call_function" and node.target is operator.getitem:
            node.type = list[torch.Tensor]


def _here(builder: str):
    return factory(__name__, builder)


# entry -> (transform, nearby case without the bug's shape, upstream attribute, planted error
# or planted replacement)
NEARBY: dict[str, tuple[str, Any, str, Any]] = {
    # no node produces several tensors
    "graph-manipulation-multi-tensor-node-size": (
        "graph_manipulation", _here("single_tensor_reduction"), "graph_manipulation.get_size_of_all_nodes",
        AttributeError("'tuple' object has no attribute 'shape'")),
    # the tuple type lists its element types
    "annotate-getitem-bare-generic": (
        "annotate_getitem_nodes", _here("typed_pair"), "annotate_getitem_nodes.annotate_getitem_nodes",
        AssertionError("Index 0 out of range for parameterized_types (len=0)")),
    # integer indices of the same tuple type
    "annotate-getitem-slice-of-tuple": (
        "annotate_getitem_nodes", _here("indexed_triple"), "annotate_getitem_nodes.annotate_getitem_nodes",
        TypeError("'<=' not supported between instances of 'int' and 'slice'")),
    # integer indices of the same NamedTuple
    "annotate-getitem-slice-of-namedtuple": (
        "annotate_getitem_nodes", _here("indexed_namedtuple"), "annotate_getitem_nodes.annotate_getitem_nodes",
        KeyError(("first",))),
    # a slice of a list that names its element type
    "annotate-getitem-slice-of-bare-list": (
        "annotate_getitem_nodes", _here("sliced_list"), "annotate_getitem_nodes.annotate_getitem_nodes",
        AssertionError("Expected 1 parameterized type, got 0")),
    # an integer index into the same list type
    "annotate-getitem-slice-of-list": (
        "annotate_getitem_nodes", _here("indexed_list"), "annotate_getitem_nodes.annotate_getitem_nodes",
        types_getitems_as_lists),
    # a NamedTuple rather than an annotated class
    "annotate-getitem-annotated-class": (
        "annotate_getitem_nodes", _here("indexed_namedtuple"), "annotate_getitem_nodes.annotate_getitem_nodes",
        AttributeError("type object 'Annotated' has no attribute '_fields'")),
}

ENTRIES = sorted(NEARBY)


def test_every_entry_has_a_trait_and_a_nearby_case() -> None:
    ids = {e.id for e in known.KNOWN if e.transform in ("graph_manipulation", "annotate_getitem_nodes")}
    assert ids == set(NEARBY)
    assert all(known.by_id()[i].match.case for i in ids)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_trait_holds_on_the_witness(entry_id: str) -> None:
    assert witness_trait_holds(entry_id)


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_trait_does_not_hold_on_a_nearby_case(entry_id: str) -> None:
    _, case, _, _ = NEARBY[entry_id]
    assert not trait_holds(entry_id, case, {})


@pytest.mark.parametrize("entry_id", ENTRIES)
def test_planted_bug_on_a_nearby_case_stays_a_failure(entry_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transform, case, attribute, error = NEARBY[entry_id]
    module, _, name = attribute.rpartition(".")
    upstream_module = {"graph_manipulation": "torch.fx.passes.graph_manipulation",
                       "annotate_getitem_nodes": "torch.fx.passes.annotate_getitem_nodes"}[module]
    plant(monkeypatch, upstream_module, name, raising(error) if isinstance(error, BaseException) else error)
    assert_unclaimed_failure(run(case, transform, {}), entry_id, message=LIKE_ENTRY)


def test_slices_of_lists_are_told_apart_by_their_element_type() -> None:
    # a bare List's slice crashes upstream, a typed list's slice is mistyped: one trait each
    assert trait_holds("annotate-getitem-slice-of-list", _here("sliced_list"), {})
    assert not trait_holds("annotate-getitem-slice-of-list", _here("sliced_bare_list"), {})
    assert not trait_holds("annotate-getitem-bare-generic", _here("sliced_bare_list"), {})
    # a variadic tuple's slice is mistyped the same way
    assert trait_holds("annotate-getitem-slice-of-list", _here("sliced_variadic_tuple"), {})


def test_slice_of_a_variadic_tuple_is_no_slice_of_tuple() -> None:
    # Tuple[T, ...] is typed by its element type upstream, slices included: no crash to claim
    assert not trait_holds("annotate-getitem-slice-of-tuple", _here("sliced_variadic_tuple"), {})


def test_node_sizes_claim_the_differing_exceptions_of_the_same_bug() -> None:
    # topk, then a size query: the reference reaches the size node and raises RuntimeError (no
    # tensor there), upstream stops at topk with its AttributeError; the same bug
    outcomes = run(_here("topk_then_size"), "graph_manipulation", {})
    assert [o.known_id for o in outcomes] == ["graph-manipulation-multi-tensor-node-size"], [
        o.describe() for o in outcomes]
    assert "different exception types" in outcomes[0].message


class TopKThenSize(torch.nn.Module):
    def forward(self, x):
        values, _ = torch.topk(x, 2)
        return values.reshape(values.size(0), -1)


def topk_then_size() -> Built:
    return Built(TopKThenSize(), (torch.randn(3, 5),))
