from __future__ import annotations

import math

import pytest
import torch

from conform.compare import compare_json, compare_tensors, compare_values


def test_equal_tensors_have_no_diff() -> None:
    x = torch.randn(3, 4)
    assert compare_values(x, x.clone()) is None


@pytest.mark.parametrize(
    ("dtype", "within", "beyond"),
    [
        (torch.float32, 1e-6, 1e-3),
        (torch.float64, 1e-9, 1e-5),
        (torch.bfloat16, 4e-3, 1e-1),
    ],
)
def test_tolerance_follows_dtype(dtype: torch.dtype, within: float, beyond: float) -> None:
    x = torch.ones(8, dtype=dtype)
    assert compare_tensors(x, x + within) is None
    assert compare_tensors(x, x + beyond) is not None


def test_integer_tensors_compare_exactly() -> None:
    x = torch.arange(5)
    assert compare_tensors(x, x + 1) is not None
    assert compare_tensors(x, x.clone()) is None


def test_nan_equals_nan() -> None:
    x = torch.tensor([1.0, math.nan])
    assert compare_values(x, x.clone()) is None
    assert compare_values(math.nan, math.nan) is None


def test_shape_and_dtype_are_named() -> None:
    diff = compare_tensors(torch.zeros(2, 3), torch.zeros(3, 2))
    assert "shape=(2, 3)" in diff and "shape=(3, 2)" in diff
    assert "float64" in compare_tensors(torch.zeros(2), torch.zeros(2, dtype=torch.float64))


def test_meta_only_ignores_values_but_not_shapes() -> None:
    assert compare_values(torch.zeros(3), torch.ones(3), meta_only=True) is None
    assert compare_values(torch.zeros(3), torch.ones(4), meta_only=True) is not None


def test_nested_structure_and_path() -> None:
    a = (torch.zeros(2), {"k": [torch.ones(1), 3]})
    b = (torch.zeros(2), {"k": [torch.ones(1) * 2, 3]})
    diff = compare_values(a, b)
    assert diff is not None and diff.startswith("output[1]['k'][0]")
    assert "structure" in compare_values((torch.zeros(1),), [torch.zeros(1)])


def test_tensor_against_non_tensor() -> None:
    assert compare_values(torch.zeros(1), 0.0) is not None


def test_python_scalars() -> None:
    assert compare_values(3, 3) is None
    assert compare_values(3, 4) is not None
    assert compare_values(1.0, 1.0 + 1e-9) is None
    assert compare_values(1.0, 1.1) is not None


def test_tolerance_scale_widens() -> None:
    x = torch.ones(4)
    assert compare_tensors(x, x + 1e-3) is not None
    assert compare_tensors(x, x + 1e-3, tolerance_scale=1000.0) is None


def test_json_diff_names_paths() -> None:
    assert compare_json({"a": [1, 2]}, {"a": [1, 2]}) is None
    diff = compare_json({"a": [1, 2], "b": 1}, {"a": [1, 3], "c": 1})
    assert "fingerprint.a[1]: 2 vs 3" in diff
    assert "fingerprint.b: only on the left" in diff
    assert "fingerprint.c: only on the right" in diff
    assert "length" in compare_json([1], [1, 2])
