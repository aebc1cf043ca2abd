"""The CPU-vs-CUDA oracle. Skipped cleanly without a GPU."""

from __future__ import annotations

import pytest

from conform.case import Case
from conform.engine import check
from conform.outcome import Stage, Symptom, Verdict
from conform.selfcheck import PLANTED

TWO_ADDS = Case("samples", {"sample": "two_adds"})


@pytest.mark.cuda
@pytest.mark.parametrize("sample", ["two_adds", "linear_relu", "tuple_out", "inplace_input", "dropout_train"])
@pytest.mark.parametrize("transform", ["split_module", "shape_prop"])
def test_correct_transform_agrees_across_devices(sample: str, transform: str) -> None:
    outcomes = check(Case("samples", {"sample": sample}), transform, params={}, devices=("cpu", "cuda"))
    assert [o.verdict for o in outcomes] == [Verdict.PASS], [o.describe() for o in outcomes]


@pytest.mark.cuda
def test_cuda_only_miscompile_is_a_device_divergence() -> None:
    outcomes = check(TWO_ADDS, PLANTED["planted_wrong_on_cuda"], params={"partition": {"add_1": 1}},
                     devices=("cpu", "cuda"))
    (o,) = [o for o in outcomes if o.symptom is Symptom.DEVICE_DIVERGENCE]
    assert o.stage is Stage.COMPARE and o.device == "cuda" and o.verdict is Verdict.FAIL
    assert o.diffs[0].left == "eager on cuda" and o.diffs[0].right == "reference on cuda"


def test_cuda_only_miscompile_is_invisible_on_cpu() -> None:
    outcomes = check(TWO_ADDS, PLANTED["planted_wrong_on_cuda"], params={"partition": {"add_1": 1}})
    assert [o.verdict for o in outcomes] == [Verdict.PASS]
