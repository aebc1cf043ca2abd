"""The engine's outcome classification, one hand-built case per symptom."""

from __future__ import annotations

import pytest
import torch

from conform.case import Case
from conform.engine import check, prepare
from conform.outcome import Outcome, Stage, Symptom, Verdict
from conform.selfcheck import PLANTED

TWO_ADDS = Case("samples", {"sample": "two_adds"})
LINEAR_RELU = Case("samples", {"sample": "linear_relu"})
TUPLE_OUT = Case("samples", {"sample": "tuple_out"})
INPLACE = Case("samples", {"sample": "inplace_input"})
SPLIT_IN_TWO = {"partition": {"add_1": 1}}


def _only(outcomes: list[Outcome], **expected: object) -> Outcome:
    matching = [o for o in outcomes if all(getattr(o, k) == v for k, v in expected.items())]
    assert matching, f"no outcome with {expected}: {[(o.verdict, o.stage, o.symptom) for o in outcomes]}"
    return matching[0]


@pytest.mark.parametrize("case", [TWO_ADDS, LINEAR_RELU, TUPLE_OUT, INPLACE], ids=lambda c: c.spec["sample"])
@pytest.mark.parametrize("transform", ["split_module", "shape_prop"])
def test_correct_transforms_pass(case: Case, transform: str) -> None:
    params = SPLIT_IN_TWO if transform == "split_module" else {}
    outcomes = check(case, transform, params=params)
    assert [o.verdict for o in outcomes] == [Verdict.PASS], [o.describe() for o in outcomes]


def test_planted_miscompile_is_an_eager_mismatch_naming_the_node() -> None:
    outcomes = check(TWO_ADDS, PLANTED["planted_add_becomes_sub"], params=SPLIT_IN_TWO)
    eager = _only(outcomes, symptom=Symptom.EAGER_MISMATCH)
    assert eager.verdict is Verdict.FAIL and eager.stage is Stage.COMPARE
    assert eager.node == "add"
    assert eager.place.startswith("reference")
    divergence = _only(outcomes, symptom=Symptom.IMPL_DIVERGENCE)
    assert divergence.diffs[0].left == "upstream" and divergence.diffs[0].right == "reference"
    assert "replay: conform replay" in eager.describe()


def test_reference_crash() -> None:
    outcomes = check(LINEAR_RELU, PLANTED["planted_crash_on_mul"], params=SPLIT_IN_TWO)
    assert [o.verdict for o in outcomes] == [Verdict.PASS]  # no multiplication in the graph
    crash = Case("samples", {"sample": "inplace_input"})
    o = _only(check(crash, PLANTED["planted_crash_on_mul"], params={}), symptom=Symptom.CRASH)
    assert o.stage is Stage.TRANSFORM_REFERENCE and o.exception == "RuntimeError"
    assert "succeeds" in o.message


def test_upstream_crash() -> None:
    o = _only(check(TWO_ADDS, PLANTED["planted_upstream_crash"], params={}), symptom=Symptom.CRASH)
    assert o.stage is Stage.TRANSFORM_UPSTREAM and o.exception == "KeyError"


def test_timeout() -> None:
    o = _only(check(TWO_ADDS, PLANTED["planted_sleeps"], params={}), symptom=Symptom.TIMEOUT)
    assert o.stage is Stage.TRANSFORM_REFERENCE
    assert o.duration_s < 10


def test_invalid_graph() -> None:
    o = _only(check(TWO_ADDS, PLANTED["planted_dangling_node"], params={}), symptom=Symptom.INVALID_GRAPH)
    assert o.stage is Stage.TRANSFORM_REFERENCE


def test_both_raise_different_types() -> None:
    o = _only(check(TWO_ADDS, PLANTED["planted_different_errors"], params={}), symptom=Symptom.IMPL_DIVERGENCE)
    assert "ValueError" in o.message and "TypeError" in o.message


def test_both_raise_same_type_conforms() -> None:
    outcomes = check(TWO_ADDS, PLANTED["planted_same_errors"], params={})
    assert [o.verdict for o in outcomes] == [Verdict.PASS]
    assert "RuntimeError" in outcomes[0].message


def test_input_mutation_is_compared() -> None:
    o = _only(check(TWO_ADDS, PLANTED["planted_mutates_input"], params={}), symptom=Symptom.EAGER_MISMATCH)
    assert "inputs" in o.message


def test_fingerprint_divergence() -> None:
    o = _only(check(TWO_ADDS, PLANTED["planted_tags_impl"], params={}), symptom=Symptom.IMPL_DIVERGENCE)
    assert o.place == "fingerprint"
    assert "upstream" in o.diffs[0].detail and "reference" in o.diffs[0].detail


def test_untraceable_case_is_skipped_as_unsupported() -> None:
    case = Case("factory", {"factory": "conform.selfcheck:untraceable"})
    (o,) = check(case, "split_module", params={})
    assert (o.verdict, o.stage, o.symptom) == (Verdict.SKIP, Stage.TRACE, Symptom.UNSUPPORTED)


def test_case_that_cannot_be_built_is_a_generate_crash() -> None:
    case = Case("factory", {"factory": "conform.selfcheck:broken_factory"})
    (o,) = check(case, "split_module", params={})
    assert (o.verdict, o.stage, o.symptom) == (Verdict.FAIL, Stage.GENERATE, Symptom.CRASH)
    assert o.transform == "split_module"


def test_stochastic_case_compares_shapes_only() -> None:
    case = Case("samples", {"sample": "dropout_train"})
    outcomes = check(case, "split_module", params={"partition": {"add": 1}})
    assert [o.verdict for o in outcomes] == [Verdict.PASS]


def test_keys_are_stable_across_runs() -> None:
    a = check(TWO_ADDS, PLANTED["planted_add_becomes_sub"], params=SPLIT_IN_TWO)
    b = check(TWO_ADDS, PLANTED["planted_add_becomes_sub"], params=SPLIT_IN_TWO)
    assert [o.key for o in a] == [o.key for o in b]
    assert len({o.key for o in a}) == len(a)


def test_prepare_is_reusable_across_transforms() -> None:
    prepared = prepare(TWO_ADDS)
    first = check(TWO_ADDS, "shape_prop", prepared=prepared)
    second = check(TWO_ADDS, "split_module", params=SPLIT_IN_TWO, prepared=prepared)
    assert first[0].verdict is Verdict.PASS and second[0].verdict is Verdict.PASS


BF16_CONV_BN = Case("factory", {"factory": "conform.witnesses.optimization:conv_bn_bfloat16"})


def test_low_precision_fold_is_judged_against_float64() -> None:
    """Folding rounds once where eager rounds twice: in bfloat16 the fused module is a few
    ulps from eager, but no further from the float64 result than eager is."""
    from conform.compare import compare_values
    from conform.engine import Prepared

    prepared = prepare(BF16_CONV_BN)
    assert isinstance(prepared, Prepared)
    outcomes = check(BF16_CONV_BN, "fuse", params={"inplace": False}, prepared=prepared)
    assert [o.verdict for o in outcomes] == [Verdict.PASS], [o.describe() for o in outcomes]
    assert compare_values(prepared.expected.outputs, prepared.golden().to(torch.bfloat16)) is not None


def test_low_precision_fold_bug_is_still_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import reference.optimization as reference

    original = reference._fold

    def planted(first, norm):
        folded = original(first, norm)
        with torch.no_grad():
            folded.bias += 0.5
        return folded

    monkeypatch.setattr(reference, "_fold", planted)
    outcomes = check(BF16_CONV_BN, "fuse", params={"inplace": False})
    eager = _only(outcomes, symptom=Symptom.EAGER_MISMATCH)
    assert eager.verdict is Verdict.FAIL and eager.place.startswith("reference")
