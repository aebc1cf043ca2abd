"""The random-spec schema: every spec the generator draws passes it, and a spec edited to
carry code, a foreign name, a wrong type or an unbounded size is refused, naming the field,
before any source is written or compiled."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conform.registry import TRANSFORMS, TransformSpec
from generators import spec as spec_mod
from generators.focus.draw import focused_specs
from generators.random_modules import RandomSource
from generators.spec import SpecError, build, module_source, standalone_source, validate

INJECTED = "__import__('os').system('echo pwned')"

#: Three inputs, a reused Linear, a split read back by unpacking, a default argument,
#: and a nested output: the spec fields most likely to be pasted into code.
SPEC: dict[str, Any] = {
    "format": spec_mod.SPEC_FORMAT,
    "dtype": "float32",
    "training": False,
    "inputs": [{"name": "x1", "shape": [4, 3], "dtype": "float32"},
               {"name": "x2", "shape": [4], "dtype": "int64", "high": 5}],
    "signature": {"default": {"name": "alpha", "value": 0.5}, "flag": None, "varkw": False},
    "nodes": [
        {"id": "v3", "op": "linear", "in": ["x1"], "attrs": {"attr": "fc3", "new": True, "in": 3, "out": 3, "bias": True}, "shape": [4, 3], "dtype": "float32"},
        {"id": "v4", "op": "linear", "in": ["v3"], "attrs": {"attr": "fc3", "new": False, "in": 3, "out": 3, "bias": True}, "shape": [4, 3], "dtype": "float32"},
        {"id": "v5", "op": "split", "in": ["v4"], "attrs": {"mode": "chunk", "dim": 0, "style": 0, "unpack": True, "arg": 2, "sizes": [2, 2], "names": ["v6", "v7"]}, "shape": None, "dtype": "tuple"},
        {"id": "v6", "op": "getitem", "in": ["v5"], "attrs": {"index": 0, "unpacked": True}, "shape": [2, 3], "dtype": "float32"},
        {"id": "v7", "op": "getitem", "in": ["v5"], "attrs": {"index": 1, "unpacked": True}, "shape": [2, 3], "dtype": "float32"},
        {"id": "v8", "op": "default_arg", "in": ["v6"], "attrs": {"style": 0}, "shape": [2, 3], "dtype": "float32"},
        {"id": "v9", "op": "cast", "in": ["x2"], "attrs": {"to": "float32", "style": 0}, "shape": [4], "dtype": "float32"},
    ],
    "outputs": {"tuple": ["v8", {"dict": {"out0": "v7", "out1": "v9"}}]},
    "stochastic": False,
}


def test_the_example_spec_is_valid_and_builds() -> None:
    validate(SPEC)
    built = build(SPEC, seed=0)
    out, rest = built.module(*built.args)
    assert out.shape == (2, 3) and set(rest) == {"out0", "out1"}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting the field at ``path`` (``nodes[0].attrs.attr``) to ``value``."""
    def mutate(spec: dict[str, Any]) -> None:
        parts = re.findall(r"[^.\[\]]+", path)
        target: Any = spec
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        target[int(last) if last.isdigit() else last] = value
    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("inputs[0].name", "x1=" + INJECTED), "inputs[0].name: \"x1=__import__("),
        (_set("inputs[0].name", "x1=" + INJECTED), "is not an identifier"),
        (_set("inputs[0].name", "class"), "inputs[0].name: 'class' is not a generated name"),
        (_set("inputs[0].name", "__x1"), "inputs[0].name: '__x1' is not a generated name"),
        (_set("inputs[1].name", "x1"), "inputs[1].name: 'x1' is already an input"),
        (_set("inputs[0].shape", [4, -1]), "inputs[0].shape[1]: -1 is outside"),
        (_set("inputs[0].shape", [4096, 4096]), "inputs[0].shape: [4096, 4096] has 16777216 elements"),
        (_set("inputs[0].shape", [1] * 40), "inputs[0].shape: has 40 items"),
        (_set("inputs[0].shape", [4, 3.0]), "inputs[0].shape[1]: 3.0 is not an integer"),
        (_set("inputs[0].dtype", "float16"), "inputs[0].dtype: 'float16' is not one of"),
        (_set("inputs[1].high", 10**12), "inputs[1].high: 1000000000000 is outside"),
        (_set("dtype", "torch.float32"), "dtype: spec dtype 'torch.float32' is not one of"),
        (_set("training", "yes"), "training: 'yes' is not a bool"),
        (_set("format", "fx-conform.random/0"), "format: 'fx-conform.random/0' is not one of"),
        (_set("evil", 1), "spec: unknown field 'evil'"),
        (_set("signature.default.name", "alpha=" + INJECTED), "signature.default.name: "),
        (_set("signature.default.value", float("nan")), "signature.default.value: nan is not a finite number"),
        (_set("signature.flag", {"name": "flag", "value": 1}), "signature.flag.value: 1 is not a bool"),
        (_set("nodes[0].id", "v3; import os"), "nodes[0].id: 'v3; import os' is not an identifier"),
        (_set("nodes[0].id", "x1"), "nodes[0].id: 'x1' is not a generated name ('v<n>')"),
        (_set("nodes[1].id", "v3"), "nodes[1].id: 'v3' is already defined"),
        (_set("nodes[0].op", "os.system"), "nodes[0].op: node 'v3' has unknown op 'os.system'"),
        (_set("nodes[0].op", "skip"), "nodes[0].op: node 'v3' has unknown op 'skip'"),
        (_set("nodes[0].in", ["x9"]), "nodes[0].in[0]: 'x9' is not an input or an earlier node"),
        (_set("nodes[0].in", ["v4"]), "nodes[0].in[0]: 'v4' is not an input or an earlier node"),
        (_set("nodes[0].in", ["x1", "x2"]), "nodes[0].in: linear takes 1 operands, got 2"),
        (_set("nodes[0].attrs.attr", "fc3 = " + INJECTED), "nodes[0].attrs.attr: \"fc3 = __import__("),
        (_set("nodes[0].attrs.attr", "conv3"), "nodes[0].attrs.attr: 'conv3' is not a generated name ('fc<n>')"),
        (_set("nodes[0].attrs.in", True), "nodes[0].attrs.in: True is not an integer"),
        (_set("nodes[0].attrs.in", "3); import os; (3"), "nodes[0].attrs.in: '3); import os; (3' is not an integer"),
        (_set("nodes[0].attrs.out", 10**9), "nodes[0].attrs.out: 1000000000 is outside [1, 4096]"),
        (_set("nodes[0].attrs.bias", "True); import os; (True"), "nodes[0].attrs.bias: "),
        (_set("nodes[0].attrs.extra", 1), "nodes[0].attrs: unknown field 'extra'"),
        (_set("nodes[1].attrs.attr", "fc9"), "nodes[1].attrs.attr: 'fc9' is reused before a node creates it"),
        (_set("nodes[2].attrs.mode", "chunk, dim=0); import os; (x"), "nodes[2].attrs.mode: "),
        (_set("nodes[2].attrs.names", ["v6", INJECTED]), "nodes[2].attrs.names[1]: "),
        (_set("nodes[2].attrs.names", ["v6", "v8"]), "nodes[2].attrs.names[1]: 'v8' is not a getitem node of v5"),
        (_set("nodes[2].attrs.sizes", [2, "2]); import os; ([2"]), "nodes[2].attrs.sizes[1]: "),
        (_set("nodes[3].attrs.index", -1), "nodes[3].attrs.index: -1 is outside"),
        (_set("nodes[5].attrs.style", 2), "nodes[5].attrs.style: style 2 reads signature.varkw"),
        (_set("nodes[6].attrs.to", "float32); import os; (torch.float32"), "nodes[6].attrs.to: "),
        (_set("nodes[6].attrs.style", 3), "nodes[6].attrs.style: 3 is outside [0, 2]"),
        (_set("nodes[6].shape", [2, 2**20]), "nodes[6].shape[1]: 1048576 is outside [0, 4096]"),
        (_set("nodes[6].dtype", "object"), "nodes[6].dtype: 'object' is not one of"),
        (_set("outputs", INJECTED), "outputs: \"__import__('os')"),
        (_set("outputs", {"tuple": []}), "outputs.tuple: [] is not a non-empty list"),
        (_set("outputs", {"set": ["v8"]}), "outputs: {'set': ['v8']} is not a name or one of"),
        (_set("outputs.tuple[1].dict", {"a'] + " + INJECTED + " + ['": "v7"}), "outputs.tuple[1].dict: key "),
    ],
)
def test_a_mutated_spec_is_refused_naming_the_field(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    spec = copy.deepcopy(SPEC)
    mutate(spec)
    for render in (validate, module_source, lambda s: standalone_source(s, 0), lambda s: build(s, 0)):
        with pytest.raises(SpecError) as info:
            render(spec)
        assert message in str(info.value)


def test_deeply_nested_outputs_are_refused() -> None:
    spec = copy.deepcopy(SPEC)
    out: Any = "v8"
    for _ in range(20):
        out = {"list": [out]}
    spec["outputs"] = out
    with pytest.raises(SpecError, match="outputs nest deeper than 8 levels"):
        validate(spec)


_DRAWS = settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_DRAWS
@given(spec=RandomSource().specs())
def test_every_drawn_spec_is_valid(spec: dict[str, Any]) -> None:
    validate(spec)


_FOCUSED_ROWS = [row for row in TRANSFORMS if row.focus]


@pytest.mark.parametrize("row", _FOCUSED_ROWS, ids=lambda row: row.name)
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_focused_draw_is_valid(row: TransformSpec, data: st.DataObject) -> None:
    spec = data.draw(focused_specs(row.load_focus()), label="spec")
    validate(spec)


@pytest.mark.parametrize("row", _FOCUSED_ROWS, ids=lambda row: row.name)
@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_attribute_of_a_focused_draw_replaced_by_code_is_refused(row: TransformSpec, data: st.DataObject) -> None:
    spec = data.draw(focused_specs(row.load_focus()), label="spec")
    with_attrs = [i for i, node in enumerate(spec["nodes"]) if node["attrs"]]
    if not with_attrs:
        return
    index = data.draw(st.sampled_from(with_attrs), label="node")
    key = data.draw(st.sampled_from(sorted(spec["nodes"][index]["attrs"])), label="attribute")
    spec = copy.deepcopy(spec)
    spec["nodes"][index]["attrs"][key] = INJECTED
    with pytest.raises(SpecError) as info:
        validate(spec)
    assert str(info.value).startswith(f"nodes[{index}].attrs.{key}: ")


def test_a_pattern_that_plants_other_kinds_is_no_spec_op() -> None:
    spec = copy.deepcopy(SPEC)
    spec["nodes"][0]["op"] = "fold_pair"
    with pytest.raises(SpecError, match=r"nodes\[0\]\.op: node 'v\d+' has unknown op 'fold_pair'"):
        validate(spec)


@_DRAWS
@given(spec=RandomSource().specs(), data=st.data())
def test_any_attribute_replaced_by_code_is_refused_naming_it(spec: dict[str, Any], data: st.DataObject) -> None:
    with_attrs = [i for i, node in enumerate(spec["nodes"]) if node["attrs"]]
    if not with_attrs:
        return
    index = data.draw(st.sampled_from(with_attrs), label="node")
    key = data.draw(st.sampled_from(sorted(spec["nodes"][index]["attrs"])), label="attribute")
    spec = copy.deepcopy(spec)
    spec["nodes"][index]["attrs"][key] = INJECTED
    with pytest.raises(SpecError) as info:
        validate(spec)
    assert str(info.value).startswith(f"nodes[{index}].attrs.{key}: ")


@_DRAWS
@given(spec=RandomSource().specs(), data=st.data())
def test_any_name_replaced_by_code_is_refused_naming_it(spec: dict[str, Any], data: st.DataObject) -> None:
    spec = copy.deepcopy(spec)
    where = data.draw(st.sampled_from(["input", "node"]), label="where")
    if where == "input" or not spec["nodes"]:
        index = data.draw(st.integers(0, len(spec["inputs"]) - 1), label="input")
        spec["inputs"][index]["name"] = INJECTED
        expected = f"inputs[{index}].name: "
    else:
        index = data.draw(st.integers(0, len(spec["nodes"]) - 1), label="node")
        spec["nodes"][index]["id"] = INJECTED
        expected = f"nodes[{index}].id: "
    with pytest.raises(SpecError) as info:
        validate(spec)
    assert str(info.value).startswith(expected)


def test_a_spec_asking_for_too_much_state_is_refused_before_allocating() -> None:
    spec = copy.deepcopy(SPEC)
    spec["inputs"] = [{"name": "x1", "shape": [1, 4096], "dtype": "float32"}]
    spec["signature"] = None
    spec["nodes"] = [
        {"id": f"v{i + 2}", "op": "linear", "in": [f"v{i + 1}" if i else "x1"],
         "attrs": {"attr": f"fc{i + 2}", "new": True, "in": 4096, "out": 4096, "bias": True},
         "shape": [1, 4096], "dtype": "float32"}
        for i in range(8)
    ]
    spec["outputs"] = "v9"
    with pytest.raises(SpecError, match=r"nodes\[7\]: the parameters and buffers up to this node hold 134250496 elements"):
        build(spec, 0)
    spec["nodes"] = spec["nodes"][:1]
    spec["outputs"] = "v2"
    validate(spec)
