"""The registry rows of the graph utilities: split parameters, drivers and fingerprints."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conform.adapters import Subject
from conform.implementations import Implementation
from conform.registry import get
from generators.params.split import computing_node_names, partition_maps, split_params


class Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        a = self.lin(x).relu()
        b = a * 2 + x
        return b.sum(), a


@pytest.fixture
def subject() -> Subject:
    module = Small()
    return Subject(module, torch.fx.symbolic_trace(module), (torch.randn(2, 4),), {})


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_split_params_are_json_and_name_computing_nodes(data) -> None:
    gm = torch.fx.symbolic_trace(Small())
    params = data.draw(split_params(gm))

    assert json.loads(json.dumps(params)) == params
    assert set(params) == {"partition", "keep_original_order", "keep_original_node_name", "keep_original_input_name"}
    assert set(params["partition"]) <= set(computing_node_names(gm))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_monotone_maps_never_decrease(data) -> None:
    gm = torch.fx.symbolic_trace(Small())
    assignment = data.draw(partition_maps(gm, kind="monotone"))

    ids = [assignment[name] for name in computing_node_names(gm)]
    assert ids == sorted(ids)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_cyclic_maps_go_round(data) -> None:
    gm = torch.fx.symbolic_trace(Small())
    assignment = data.draw(partition_maps(gm, kind="cyclic", partitions=2))

    ids = [assignment[name] for name in computing_node_names(gm)]
    assert all(a != b for a, b in zip(ids, ids[1:]))


@pytest.mark.parametrize("row", ["split_module", "shape_prop", "graph_manipulation", "param_fetch", "annotate_getitem_nodes"])
def test_fingerprints_are_json_and_agree(row: str, subject: Subject) -> None:
    spec = get(row)
    params = {"partition": {"mul": 1, "add": 1, "sum_1": 1}} if row == "split_module" else {}
    prints = []
    for impl in ("upstream", "reference"):
        applied = spec.load(Implementation(impl))(subject.clone(), params)
        prints.append(json.loads(json.dumps(spec.load_fingerprint()(applied))))

    assert prints[0] == prints[1]
    assert prints[0] or row == "annotate_getitem_nodes"  # Small has no getitem to annotate


def test_split_fingerprint_names_children_and_qualnames(subject: Subject) -> None:
    spec = get("split_module")
    applied = spec.load(Implementation("reference"))(subject, {"partition": {"mul": 1, "add": 1, "sum_1": 1}})

    summary = spec.load_fingerprint()(applied)

    assert sorted(summary["submodules"]) == ["submod_0", "submod_1"]
    assert summary["qualname_map"] == {"submod_0.lin": "lin"}
    assert [p[0] for p in summary["submodules"]["submod_1"]["placeholders"]] == ["relu", "x"]


class InPlace(torch.nn.Module):
    def forward(self, x):
        y = x * 2
        y.add_(1)
        return y + x


def test_in_place_op_over_several_partitions_is_applied() -> None:
    module = InPlace()
    subject = Subject(module, torch.fx.symbolic_trace(module), (torch.randn(3),), {})
    apply = get("split_module").load(Implementation("reference"))

    # the read of y after add_ is in another partition: the case is checked like any other
    applied = apply(subject.clone(), {"partition": {"add": 1}})

    x = torch.randn(3)
    torch.testing.assert_close(applied.runnable(x), module(x))
