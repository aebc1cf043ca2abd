"""annotate_getitem_nodes: element types of tuple, list and NamedTuple sequences (typing
generics and PEP 585 aliases), on both implementations."""

from __future__ import annotations

import operator
import typing

import pytest
import torch
import torch.fx

from conform.implementations import Implementation

# the functional form keeps the field types as objects (this module postpones annotations)
Point = typing.NamedTuple("Point", [("x", torch.Tensor), ("label", int)])  # noqa: UP014


def getitem_type(impl: Implementation, sequence_type: object, index: object) -> object:
    graph = torch.fx.Graph()
    seq = graph.placeholder("seq", type_expr=sequence_type)
    item = graph.call_function(operator.getitem, (seq, index))
    graph.output(item)
    impl.annotate_getitem_nodes.annotate_getitem_nodes(graph)
    return item.type


CASES = [
    (typing.Tuple[int, str], 0, int),  # noqa: UP006 - typing generics are what is being read
    (typing.Tuple[int, str], 1, str),  # noqa: UP006
    (typing.Tuple[int, str], -1, str),  # noqa: UP006
    (tuple[torch.Tensor, float], 0, torch.Tensor),
    (tuple[torch.Tensor, float], 1, float),
    (typing.Tuple[int, ...], 5, int),  # noqa: UP006
    (tuple[float, ...], 0, float),
    (typing.List[torch.Tensor], 3, torch.Tensor),  # noqa: UP006
    (list[str], 0, str),
    (Point, 0, torch.Tensor),
    (Point, 1, int),
]


@pytest.mark.parametrize(("sequence_type", "index", "expected"), CASES, ids=lambda v: repr(v)[:30])
def test_element_type(impl: Implementation, sequence_type, index, expected) -> None:
    assert getitem_type(impl, sequence_type, index) == expected


@pytest.mark.parametrize(
    "sequence_type",
    [None, typing.Dict[str, int], dict[str, int], torch.Tensor, int],  # noqa: UP006
    ids=["untyped", "Dict", "dict", "Tensor", "int"],
)
def test_other_sequences_are_left_alone(impl: Implementation, sequence_type) -> None:
    assert getitem_type(impl, sequence_type, 0) is None


def test_index_past_a_fixed_tuple_raises(impl: Implementation) -> None:
    with pytest.raises(AssertionError):
        getitem_type(impl, typing.Tuple[int, str], 2)  # noqa: UP006


def test_an_existing_type_is_replaced(impl: Implementation) -> None:
    graph = torch.fx.Graph()
    seq = graph.placeholder("seq", type_expr=tuple[int, str])
    item = graph.call_function(operator.getitem, (seq, 1), type_expr=bytes)
    graph.output(item)

    impl.annotate_getitem_nodes.annotate_getitem_nodes(graph)

    assert item.type is str


class Unpacks(torch.nn.Module):
    def forward(self, pair, point):
        a, b = pair
        return a * b + point[0]


Unpacks.forward.__annotations__.update(pair=tuple[torch.Tensor, torch.Tensor], point=Point)


def test_traced_forward_annotations(impl: Implementation) -> None:
    gm = torch.fx.symbolic_trace(Unpacks())

    impl.annotate_getitem_nodes.annotate_getitem_nodes(gm.graph)

    types = {n.name: n.type for n in gm.graph.nodes if n.target is operator.getitem}
    assert types == {"getitem": torch.Tensor, "getitem_1": torch.Tensor, "getitem_2": torch.Tensor}
    gm.recompile()
    a, b = torch.randn(2), torch.randn(2)
    torch.testing.assert_close(gm((a, b), Point(a, 1)), a * b + a)


# --- where upstream is wrong (conform/known/): strict xfail on upstream ---------------------


@pytest.mark.parametrize(
    ("known_id", "sequence_type", "index", "expected"),
    [
        ("annotate-getitem-bare-generic", typing.Tuple, 0, None),  # noqa: UP006
        ("annotate-getitem-bare-generic", typing.List, 0, None),  # noqa: UP006
        ("annotate-getitem-slice-of-tuple", typing.Tuple[int, str, float], slice(1, None), tuple[str, float]),  # noqa: UP006
        ("annotate-getitem-slice-of-namedtuple", Point, slice(0, 1), tuple[torch.Tensor]),
    ],
    ids=["bare-Tuple", "bare-List", "tuple-slice", "namedtuple-slice"],
)
def test_upstream_misreads(request, impl: Implementation, known_id, sequence_type, index, expected) -> None:
    request.applymarker(pytest.mark.xfail(impl.name == "upstream", reason=known_id, strict=True))

    assert getitem_type(impl, sequence_type, index) == expected


def test_annotated_class_that_is_not_a_namedtuple(request, impl: Implementation) -> None:
    request.applymarker(
        pytest.mark.xfail(impl.name == "upstream", reason="annotate-getitem-annotated-class", strict=True))
    from conform.witnesses.graph_utils import Annotated

    assert getitem_type(impl, Annotated, 0) is None
