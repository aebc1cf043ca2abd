"""Witnesses of the known divergences of the graph utilities (node sizes, getitem types).

The forward annotations are set as objects after each class (this module postpones
annotation evaluation, and the tracer records what it finds in ``__annotations__``).
"""

from __future__ import annotations

import typing

import torch

from conform.case import Case
from conform.known import Witness
from generators.sources import Built


def _factory(builder: str) -> Case:
    return Case(source="factory", spec={"factory": f"conform.witnesses.graph_utils:{builder}"})


# --- a node producing a tuple of tensors, sized ------------------------------------------------


class TopK(torch.nn.Module):
    def forward(self, x):
        values, indices = torch.topk(x, 2)
        return values + indices


def topk() -> Built:
    return Built(TopK(), (torch.randn(3, 5),))


def tuple_output_sizes_witness() -> Witness:
    return Witness(_factory("topk"))


# --- getitem on sequences whose annotation upstream misreads -----------------------------------


class BareTuple(torch.nn.Module):
    def forward(self, pair):
        return pair[0] + 1


BareTuple.forward.__annotations__["pair"] = typing.Tuple  # noqa: UP006 - the bare alias is the point


def bare_tuple() -> Built:
    return Built(BareTuple(), ((torch.randn(2), torch.randn(2)),))


def bare_tuple_witness() -> Witness:
    return Witness(_factory("bare_tuple"))


class SlicedTuple(torch.nn.Module):
    def forward(self, triple):
        rest = triple[1:]
        return rest[0] * rest[1]


SlicedTuple.forward.__annotations__["triple"] = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def sliced_tuple() -> Built:
    return Built(SlicedTuple(), ((torch.randn(2), torch.randn(2), torch.randn(2)),))


def sliced_tuple_witness() -> Witness:
    return Witness(_factory("sliced_tuple"))


class Pair(typing.NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


class SlicedNamedTuple(torch.nn.Module):
    def forward(self, pair):
        head = pair[:1]
        return head[0] - pair[1]


SlicedNamedTuple.forward.__annotations__["pair"] = Pair


def sliced_namedtuple() -> Built:
    return Built(SlicedNamedTuple(), (Pair(torch.randn(2), torch.randn(2)),))


def sliced_namedtuple_witness() -> Witness:
    return Witness(_factory("sliced_namedtuple"))


class Annotated:
    """A container class with annotations that is not a NamedTuple."""

    first: torch.Tensor

    def __init__(self, *items: torch.Tensor) -> None:
        self.items = items

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.items[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Annotated) and all(
            a.equal(b) for a, b in zip(self.items, other.items, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]


class IndexesAnnotatedClass(torch.nn.Module):
    def forward(self, box):
        return box[0] * 3


IndexesAnnotatedClass.forward.__annotations__["box"] = Annotated


def indexes_annotated_class() -> Built:
    return Built(IndexesAnnotatedClass(), (Annotated(torch.randn(2)),))


def annotated_class_witness() -> Witness:
    return Witness(_factory("indexes_annotated_class"))


class SlicedBareList(torch.nn.Module):
    def forward(self, seq):
        return seq[0:][0] + 1


SlicedBareList.forward.__annotations__["seq"] = typing.List  # noqa: UP006 - the bare alias is the point


def sliced_bare_list() -> Built:
    return Built(SlicedBareList(), ([torch.randn(2), torch.randn(2)],))


def sliced_bare_list_witness() -> Witness:
    return Witness(_factory("sliced_bare_list"))


class SlicedList(torch.nn.Module):
    def forward(self, seq):
        return seq[1:][0] * 2


SlicedList.forward.__annotations__["seq"] = list[torch.Tensor]


def sliced_list() -> Built:
    return Built(SlicedList(), ([torch.randn(2), torch.randn(2)],))


def sliced_list_witness() -> Witness:
    return Witness(_factory("sliced_list"))
