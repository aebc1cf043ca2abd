"""The random-module spec format: validation, rendering, building."""

from __future__ import annotations

import copy

import pytest
import torch

from generators import spec as spec_mod
from generators.spec import SpecError, build, module_source, standalone_source, validate

#: A hand-written spec: a shared Linear called twice, a matmul and a tuple output.
SPEC = {
    "format": spec_mod.SPEC_FORMAT,
    "dtype": "float32",
    "training": False,
    "inputs": [{"name": "x1", "shape": [3, 3], "dtype": "float32"}],
    "signature": {"default": None, "flag": None, "varkw": False},
    "nodes": [
        {"id": "v2", "op": "linear", "in": ["x1"], "attrs": {"attr": "fc2", "new": True, "in": 3, "out": 3, "bias": True}, "shape": [3, 3], "dtype": "float32"},
        {"id": "v3", "op": "linear", "in": ["v2"], "attrs": {"attr": "fc2", "new": False, "in": 3, "out": 3, "bias": True}, "shape": [3, 3], "dtype": "float32"},
        {"id": "v4", "op": "matmul", "in": ["v3", "v2"], "attrs": {"style": 0, "rank": 2}, "shape": [3, 3], "dtype": "float32"},
    ],
    "outputs": {"tuple": ["v4", {"list": ["v3"]}]},
    "stochastic": False,
}


def test_hand_written_spec_renders_readable_source() -> None:
    source = module_source(SPEC)
    assert "class GeneratedModule(nn.Module):" in source
    assert source.count("nn.Linear(3, 3, bias=True)") == 1  # one submodule ...
    assert source.count("self.fc2(") == 2  # ... called twice
    assert "return (v4, [v3])" in source


def test_hand_written_spec_builds_and_computes() -> None:
    built = build(SPEC, seed=0)
    (x,) = built.args
    fc = built.module.fc2
    expected = fc(fc(x)) @ fc(x)
    out, (second,) = built.module(x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(second, fc(fc(x)))


def test_standalone_source_defines_build_case_and_concrete_args() -> None:
    namespace: dict = {}
    exec(standalone_source(SPEC, 3), namespace)
    module, args, kwargs = namespace["build_case"]()
    assert namespace["CONCRETE_ARGS"] is None
    assert kwargs == {}
    torch.testing.assert_close(module(*args)[0], build(SPEC, 3).module(*build(SPEC, 3).args)[0])


def test_concrete_args_come_from_the_flag() -> None:
    spec = copy.deepcopy(SPEC)
    spec["signature"]["flag"] = {"name": "flag", "value": True}
    assert build(spec, 0).concrete_args == {"flag": True}
    assert "flag: bool = True" in module_source(spec)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(dtype="float16"), "dtype"),
        (lambda s: s["nodes"][0].update(op="no_such_op"), "unknown op"),
        (lambda s: s.pop("nodes"), "lacks nodes"),
    ],
)
def test_malformed_specs_are_rejected_with_the_reason(mutate, message: str) -> None:
    spec = copy.deepcopy(SPEC)
    mutate(spec)
    with pytest.raises(SpecError, match=message):
        validate(spec)


def test_non_dict_spec_is_rejected() -> None:
    with pytest.raises(SpecError):
        validate(["not", "a", "spec"])


def test_op_count_ignores_parameters_and_tuple_reads() -> None:
    assert spec_mod.op_count(SPEC) == 3
    spec = copy.deepcopy(SPEC)
    spec["nodes"].insert(0, {"id": "w9", "op": "param", "in": [], "attrs": {"scale": 1.0}, "shape": [3], "dtype": "float32"})
    assert spec_mod.op_count(spec) == 3


def test_digest_is_stable_and_content_based() -> None:
    assert spec_mod.digest(SPEC) == spec_mod.digest(copy.deepcopy(SPEC))
    other = copy.deepcopy(SPEC)
    other["training"] = True
    assert spec_mod.digest(other) != spec_mod.digest(SPEC)


def test_bfloat16_spec_converts_parameters_and_inputs() -> None:
    spec = copy.deepcopy(SPEC)
    spec["dtype"] = "bfloat16"
    for entry in [*spec["inputs"], *spec["nodes"]]:
        entry["dtype"] = "bfloat16"
    built = build(spec, 0)
    assert built.args[0].dtype == torch.bfloat16
    assert built.module.fc2.weight.dtype == torch.bfloat16
    assert built.module(*built.args)[0].dtype == torch.bfloat16
