"""Precision of the known divergences of the optimization family (fuse, remove_dropout,
optimize_for_inference, merge_matmul, validator): each trait holds on its witness and not on
a nearby case without the bug's shape, where a planted bug with the symptom the entry claims
stays a failure; the witness's every symptom is claimed; and a reference bug on a witness is
not hidden by the entry of the upstream bug it shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn
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
from conform.case import Case
from conform.outcome import Verdict
from conform.witnesses.optimization import ConvBatchNorm, LinearBatchNorm, _with_stats
from generators.sources import Built

UPSTREAM = "torch.fx.experimental.optimization"
UPSTREAM_MERGE = "torch.fx.experimental.merge_matmul"
WITNESSES = "conform.witnesses.optimization"

FUSE: dict[str, Any] = {"inplace": False}
FUSE_AND_DROP: dict[str, Any] = {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "off"}
LAYOUT: dict[str, Any] = {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "length"}


# --- nearby cases ------------------------------------------------------------------------------


def conv_bn() -> Built:
    """One conv called once, then its batch norm: nothing else sees the folded module."""
    return Built(_with_stats(ConvBatchNorm()), (torch.randn(1, 3, 6, 6),))


def linear_bn_rows() -> Built:
    """Linear(5, 4) + BatchNorm1d(4, affine=True) on (6, 5) rows: the fold is sound."""
    return Built(_with_stats(LinearBatchNorm(4, affine=True)), (torch.randn(6, 5),))


class PositionalDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(x) * 2


def positional_dropout() -> Built:
    return Built(PositionalDropout().eval(), (torch.randn(4, 4),))


class SameShapeGate(nn.Module):
    """add/mul in an MKLDNN region on operands of one shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return torch.relu(y * torch.sigmoid(self.gate(x)) + y)


def same_shape_gate() -> Built:
    return Built(SameShapeGate().eval(), (torch.randn(2, 3, 8, 8),))


class GlobalPool(nn.Module):
    """An adaptive pool to 1x1, which every input size divides, inside an MKLDNN region."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1))


def global_pool() -> Built:
    return Built(GlobalPool().eval(), (torch.randn(1, 3, 5, 5),))


class RowMinimum(nn.Module):
    """relu and sigmoid of a reduction that keeps a dim: no 0-dim value in the region."""

    def forward(self, x):
        return torch.sigmoid(torch.relu(torch.amin(x, dim=1)))


def row_minimum() -> Built:
    return Built(RowMinimum().eval(), (torch.randn(3, 4),))


class OneGroup(nn.Module):
    def forward(self, a, b, w):
        return torch.matmul(a, w), torch.matmul(b, w)


def one_group() -> Built:
    """Two positional matmuls of 2-D operands sharing a 2-D right operand, nothing else."""
    return Built(OneGroup(), (torch.randn(2, 4), torch.randn(3, 4), torch.randn(4, 5)))


def here(builder: str) -> Case:
    return factory(__name__, builder)


def witness_case(builder: str) -> Case:
    return factory(WITNESSES, builder)


# --- planted bugs ------------------------------------------------------------------------------


def fold_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference: every folded module's bias is one too large."""
    import reference.optimization as reference

    original = reference._fold

    def planted(first: nn.Module, norm: nn.Module) -> nn.Module:
        folded = original(first, norm)
        with torch.no_grad():
            folded.bias += 1.0
        return folded

    monkeypatch.setattr(reference, "_fold", planted)


def products_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference: every merged product is one too large."""
    import reference.merge_matmul as reference

    original = reference.merged_matmul

    def merged_matmul(lhs: list[torch.Tensor], rhs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(p + 1 for p in original(lhs, rhs))

    monkeypatch.setattr(reference, "merged_matmul", merged_matmul)


def upstream_raises(module: str, attr: str, exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    """Upstream: ``module.attr`` raises ``exc`` (the entry's own message, on the wrong case)."""
    return lambda monkeypatch: plant(monkeypatch, module, attr, raising(exc))


def upstream_modules_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream: fuse hands back the caller's model, so the layout pass converts its modules."""
    plant(monkeypatch, UPSTREAM, "fuse", lambda model, inplace=False, no_trace=False: model)


def upstream_result_raises(message: str, error: type[Exception] = RuntimeError) -> Callable[[pytest.MonkeyPatch], None]:
    """Upstream: the optimized module raises ``error(message)`` when it runs."""

    def plant_bug(monkeypatch: pytest.MonkeyPatch) -> None:
        from torch.fx.experimental import optimization

        original = optimization.optimize_for_inference

        def planted(model: nn.Module, pass_config: dict | None = None, tracer: Any = torch.fx.Tracer) -> nn.Module:
            result = original(model, pass_config, tracer)
            result.register_forward_pre_hook(raising(error(message)))
            return result

        monkeypatch.setattr(optimization, "optimize_for_inference", planted)

    return plant_bug


def upstream_truncation_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import z3
    from torch.fx.experimental import validator

    monkeypatch.setattr(validator.SympyToZ3, "trunc_to_int", lambda self, x, dtype: z3.ToInt(x) + 1)


def upstream_bitwise_and_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import z3
    from torch.fx.experimental import validator

    def bitwise_and(self: Any, a: Any, b: Any) -> Any:
        return z3.BV2Int(z3.Int2BV(a, 64) & z3.Int2BV(b, 64)) + 1

    monkeypatch.setattr(validator._Z3Ops, "bitwise_and", bitwise_and)


def reference_floor_term_respelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference: FloorToInt translates to a different (equivalent) z3 term."""
    from reference._z3_semantics import SympyToZ3

    original = SympyToZ3.floor_to_int
    monkeypatch.setattr(SympyToZ3, "floor_to_int", lambda self, x, dtype: original(self, x, dtype) + 0)


# --- the table ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Precision:
    entry: str
    near: Case
    params: dict[str, Any]
    plant: Callable[[pytest.MonkeyPatch], None]
    # whether the planted failure has the text the entry's matcher looks for (so only the
    # trait keeps the entry from claiming it)
    same_text: bool = True


def _each_fusing_row(entry: str, near: Case, plant_bug: Callable[[pytest.MonkeyPatch], None]) -> list[Any]:
    return [
        pytest.param(Precision(f"fuse-{entry}", near, FUSE, plant_bug), id=f"fuse-{entry}"),
        pytest.param(Precision(f"optimize-for-inference-{entry}", near, FUSE_AND_DROP, plant_bug),
                     id=f"optimize-for-inference-{entry}"),
    ]


_LINEAR_BN_TYPEERROR = TypeError("unsupported operand type(s) for *: 'NoneType' and 'Tensor'")
_LINEAR_BN_ASSERTION = AssertionError("To fuse, linear.out_features == bn.num_features or bn.num_features == 1")
_DROPOUT_ASSERTION = AssertionError("Expected 1 arg for Dropout, got 0")

CASES = [
    *_each_fusing_row("shared-conv-module", here("conv_bn"), fold_off_by_one),
    *_each_fusing_row("linear-bn-without-affine", here("linear_bn_rows"),
                      upstream_raises(UPSTREAM, "fuse_linear_bn_eval", _LINEAR_BN_TYPEERROR)),
    *_each_fusing_row("linear-bn-channel-mismatch", here("linear_bn_rows"),
                      upstream_raises(UPSTREAM, "fuse_linear_bn_eval", _LINEAR_BN_ASSERTION)),
    *_each_fusing_row("linear-bn-sequence-channels", here("linear_bn_rows"), fold_off_by_one),
    pytest.param(Precision("remove-dropout-keyword-input", here("positional_dropout"), {},
                           upstream_raises(UPSTREAM, "remove_dropout", _DROPOUT_ASSERTION)),
                 id="remove-dropout-keyword-input"),
    pytest.param(Precision("optimize-for-inference-dropout-keyword-input", here("positional_dropout"), FUSE_AND_DROP,
                           upstream_raises(UPSTREAM, "remove_dropout", _DROPOUT_ASSERTION)),
                 id="optimize-for-inference-dropout-keyword-input"),
    pytest.param(Precision("optimize-for-inference-scalar-operand", witness_case("conv_stack"), LAYOUT,
                           upstream_raises(UPSTREAM, "use_mkl_length",
                                           AttributeError("'int' object has no attribute 'target'"))),
                 id="optimize-for-inference-scalar-operand"),
    pytest.param(Precision("optimize-for-inference-mutates-model", witness_case("conv_stack"),
                           {"conv_bn_fuse": True, "remove_dropout": False, "mkldnn": "length"},
                           upstream_modules_in_place),
                 id="optimize-for-inference-mutates-model"),
    pytest.param(Precision("optimize-for-inference-broadcasting", here("same_shape_gate"), LAYOUT,
                           upstream_result_raises("mkldnn_mul: currently mkldnn not support broadcasting")),
                 id="optimize-for-inference-broadcasting"),
    pytest.param(Precision("optimize-for-inference-uneven-adaptive-pool", here("global_pool"), LAYOUT,
                           upstream_result_raises("input size is not divisible by the output size is not "
                                                  "supported yet")),
                 id="optimize-for-inference-uneven-adaptive-pool"),
    pytest.param(Precision("optimize-for-inference-unconvertible-region-input", here("row_minimum"),
                           {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "always"},
                           upstream_result_raises("could not create a primitive descriptor for the reorder "
                                                  "primitive")),
                 id="optimize-for-inference-unconvertible-region-input"),
    pytest.param(Precision("optimize-for-inference-converted-parameter-read", witness_case("conv_stack"),
                           {"conv_bn_fuse": False, "remove_dropout": True, "mkldnn": "always"},
                           upstream_result_raises("Could not run 'aten::mean.out' with arguments from the "
                                                  "'MkldnnCPU' backend", NotImplementedError)),
                 id="optimize-for-inference-converted-parameter-read"),
    pytest.param(Precision("merge-matmul-second-group", here("one_group"), {},
                           upstream_raises(UPSTREAM_MERGE, "legalize_graph",
                                           RuntimeError("Attempting to remove matmul from wrong graph"))),
                 id="merge-matmul-second-group"),
    pytest.param(Precision("merge-matmul-batched-shared-operand", here("one_group"), {}, products_off_by_one),
                 id="merge-matmul-batched-shared-operand"),
    pytest.param(Precision("merge-matmul-vector-left-operand", here("one_group"), {},
                           upstream_raises(UPSTREAM_MERGE, "split_result_tensors",
                                           RuntimeError("Tensors must have same number of dimensions: got 1 and 2"))),
                 id="merge-matmul-vector-left-operand"),
    pytest.param(Precision("merge-matmul-batched-operand-mixed-ranks", here("one_group"), {},
                           upstream_raises(UPSTREAM_MERGE, "split_result_tensors",
                                           RuntimeError("Tensors must have same number of dimensions: got 1 and 3"))),
                 id="merge-matmul-batched-operand-mixed-ranks"),
    pytest.param(Precision("merge-matmul-keyword-operand", here("one_group"), {},
                           upstream_raises(UPSTREAM_MERGE, "are_nodes_independent",
                                           ValueError("not enough values to unpack (expected 2, got 1)"))),
                 id="merge-matmul-keyword-operand"),
    pytest.param(Precision("merge-matmul-mutation-between", here("one_group"), {}, products_off_by_one),
                 id="merge-matmul-mutation-between"),
    pytest.param(Precision("validator-trunc-to-int", witness_case("sized"),
                           {"expr": ["trunc_div", ["sym", 1], ["int", 2]]}, upstream_truncation_off_by_one),
                 id="validator-trunc-to-int"),
    pytest.param(Precision("validator-trunc-to-int-term", witness_case("sized"),
                           {"expr": ["floor_div", ["sym", 1], ["int", 2]]}, reference_floor_term_respelled,
                           same_text=False),
                 id="validator-trunc-to-int-term"),
    pytest.param(Precision("validator-bitwise-unsigned", witness_case("sized"),
                           {"expr": ["band", ["sym", 0], ["sym", 1]]}, upstream_bitwise_and_off_by_one),
                 id="validator-bitwise-unsigned"),
    pytest.param(Precision("validator-bitwise-unsigned-term", witness_case("sized"),
                           {"expr": ["floor_div", ["sym", 1], ["int", 2]]}, reference_floor_term_respelled,
                           same_text=False),
                 id="validator-bitwise-unsigned-term"),
]

FAMILY = ("fuse", "remove_dropout", "optimize_for_inference", "merge_matmul", "validator")
TRAITED = [e.id for e in known.KNOWN if e.transform in FAMILY and e.match.case]


def test_every_entry_with_a_trait_has_a_precision_case() -> None:
    assert sorted(TRAITED) == sorted(p.values[0].entry for p in CASES)


@pytest.mark.parametrize("entry_id", TRAITED)
def test_trait_holds_on_the_witness(entry_id: str) -> None:
    assert witness_trait_holds(entry_id)


@pytest.mark.parametrize("entry_id", [e.id for e in known.KNOWN if e.transform in FAMILY], )
def test_every_symptom_of_the_witness_is_claimed(entry_id: str) -> None:
    entry = known.by_id()[entry_id]
    witness = known.load_witness(entry)
    outcomes = run(witness.case, entry.transform, witness.params)
    described = "; ".join(o.describe() for o in outcomes)
    assert {o.verdict for o in outcomes} == {Verdict.KNOWN}, described
    assert {o.known_id for o in outcomes} == {entry_id}, described


@pytest.mark.parametrize("case", CASES)
def test_trait_does_not_hold_on_a_nearby_case(case: Precision) -> None:
    assert not trait_holds(case.entry, case.near, case.params)


@pytest.mark.parametrize("case", CASES)
def test_planted_bug_on_a_nearby_case_stays_a_failure(case: Precision, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = known.by_id()[case.entry]
    case.plant(monkeypatch)
    outcomes = run(case.near, entry.transform, case.params)
    assert_unclaimed_failure(outcomes, case.entry, message=LIKE_ENTRY if case.same_text else None)


@pytest.mark.parametrize(
    ("entry_id", "plant_bug"),
    [
        ("fuse-shared-conv-module", fold_off_by_one),
        ("optimize-for-inference-shared-conv-module", fold_off_by_one),
        ("merge-matmul-batched-shared-operand", products_off_by_one),
    ],
)
def test_reference_bug_on_the_witness_stays_a_failure(
    entry_id: str, plant_bug: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entries claim upstream's wrong outputs on cases of their shape; the reference's
    own eager mismatch there is still reported."""
    entry = known.by_id()[entry_id]
    witness = known.load_witness(entry)
    plant_bug(monkeypatch)
    outcomes = run(witness.case, entry.transform, witness.params)
    failing = [o for o in outcomes if o.verdict is Verdict.FAIL]
    assert any("module reference produced computes different" in o.message for o in failing), (
        "; ".join(o.describe() for o in outcomes))


def test_sequence_trait_needs_the_third_dim() -> None:
    """Same module, same weights: over (N, L, C) the trait holds, over (N, C) rows it does not."""
    assert trait_holds("fuse-linear-bn-sequence-channels", witness_case("linear_bn_sequence_channels"), FUSE)
    assert not trait_holds("fuse-linear-bn-sequence-channels", here("linear_bn_rows"), FUSE)


@pytest.mark.parametrize(
    ("entry_id", "params"),
    [
        ("optimize-for-inference-shared-conv-module", {"conv_bn_fuse": False, "remove_dropout": True, "mkldnn": "off"}),
        ("optimize-for-inference-dropout-keyword-input", {"conv_bn_fuse": True, "remove_dropout": False, "mkldnn": "off"}),
        ("optimize-for-inference-mutates-model", {"conv_bn_fuse": False, "remove_dropout": False, "mkldnn": "never"}),
        ("optimize-for-inference-scalar-operand", {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "off"}),
    ],
)
def test_trait_does_not_hold_when_the_pass_is_off(entry_id: str, params: dict[str, Any]) -> None:
    witness = known.load_witness(known.by_id()[entry_id])
    assert not trait_holds(entry_id, witness.case, params)


class VectorsWithKeywords(nn.Module):
    def forward(self, a, b, w, **kwargs):
        return torch.matmul(a, w) * kwargs.get("scale", 1.0), torch.matmul(b, w)


def vectors_with_keywords() -> Built:
    return Built(VectorsWithKeywords(), (torch.randn(4), torch.randn(4), torch.randn(4, 5)), {"scale": 2.0})


def test_value_traits_run_a_forward_taking_keywords() -> None:
    """Traits that run the case bind ``**kwargs`` (and named keywords) as the call does."""
    assert trait_holds("merge-matmul-vector-left-operand", here("vectors_with_keywords"), {})


class ReluOfIndices(nn.Module):
    def forward(self, x):
        return torch.relu(x.argmax(1))


def relu_of_indices() -> Built:
    return Built(ReluOfIndices().eval(), (torch.randn(3, 4),))


def test_integer_values_in_a_region_are_unconvertible_too() -> None:
    entry = "optimize-for-inference-unconvertible-region-input"
    params = {"conv_bn_fuse": True, "remove_dropout": True, "mkldnn": "always"}
    assert trait_holds(entry, here("relu_of_indices"), params)
    outcomes = run(here("relu_of_indices"), "optimize_for_inference", params)
    assert {o.known_id for o in outcomes} == {entry}, "; ".join(o.describe() for o in outcomes)


def test_batched_group_of_one_rank_is_no_mixed_rank_group() -> None:
    # (2, 4) and (2, 4) times a (3, 4, 5) operand: batched, but the concatenation lines up
    assert not trait_holds("merge-matmul-batched-operand-mixed-ranks", witness_case("shared_batched_operand"), {})
    assert trait_holds("merge-matmul-batched-operand-mixed-ranks", witness_case("batched_operand_mixed_ranks"), {})


def test_converted_parameter_read_needs_the_layout_pass() -> None:
    # the same weight read with MKLDNN off reads a dense tensor: nothing to claim
    case = witness_case("reads_conv_weight")
    assert trait_holds("optimize-for-inference-converted-parameter-read", case,
                       {"conv_bn_fuse": False, "remove_dropout": True, "mkldnn": "always"})
    assert not trait_holds("optimize-for-inference-converted-parameter-read", case,
                           {"conv_bn_fuse": False, "remove_dropout": True, "mkldnn": "off"})
