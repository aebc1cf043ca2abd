"""Comparators: each returns a diff (a string a person can read) or None when equal.

Values are compared leaf by leaf after flattening with ``torch.utils._pytree``; tensors go
through :func:`torch.testing.assert_close` (dtype-aware tolerances, NaN equal to NaN), other
leaves through ``==``. ``meta_only`` compares only shapes, dtypes and container structure,
for cases whose forward draws random numbers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.utils._pytree as pytree


def _describe_leaf(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype}, device={value.device})"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _path_name(path: tuple[Any, ...]) -> str:
    return "output" + "".join(str(p) for p in path) if path else "output"


def _flatten(value: Any) -> tuple[list[tuple[Any, Any]], Any]:
    return pytree.tree_flatten_with_path(value)


def compare_tensors(
    expected: torch.Tensor,
    actual: torch.Tensor,
    *,
    meta_only: bool = False,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance_scale: float = 1.0,
) -> str | None:
    """Diff of two tensors or None; ``tolerance_scale`` widens the dtype defaults."""
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return f"expected {_describe_leaf(expected)}, got {_describe_leaf(actual)}"
    if meta_only:
        return None
    if expected.is_quantized:
        expected, actual = expected.dequantize(), actual.dequantize()
    if expected.layout != torch.strided:
        expected, actual = expected.to_dense(), actual.to_dense()
    if actual.layout != torch.strided:
        actual = actual.to_dense()
    actual = actual.to(expected.device)
    if rtol is None and atol is None and tolerance_scale != 1.0:
        from torch.testing._comparison import default_tolerances

        rtol, atol = default_tolerances(expected, actual)
        rtol, atol = rtol * tolerance_scale, atol * tolerance_scale
    try:
        torch.testing.assert_close(
            actual, expected, rtol=rtol, atol=atol, equal_nan=True, check_stride=False,
            check_device=False, check_layout=False,
        )
    except AssertionError as exc:
        return str(exc).strip()
    return None


def compare_values(
    expected: Any,
    actual: Any,
    *,
    meta_only: bool = False,
    tolerance_scale: float = 1.0,
    label: str = "output",
) -> str | None:
    """Compare two (nested) values; the diff names the path of the first differing leaf."""
    exp_leaves, exp_spec = _flatten(expected)
    act_leaves, act_spec = _flatten(actual)
    if exp_spec != act_spec:
        return (
            f"{label} structure differs: expected {_short(exp_spec)}, got {_short(act_spec)}"
        )
    for (path, exp), (_, act) in zip(exp_leaves, act_leaves):
        where = label + "".join(str(p) for p in path)
        diff = _compare_leaf(exp, act, meta_only=meta_only, tolerance_scale=tolerance_scale)
        if diff is not None:
            return f"{where}: {diff}"
    return None


def _short(spec: Any) -> str:
    text = str(spec)
    return text if len(text) <= 200 else text[:197] + "..."


def _compare_leaf(expected: Any, actual: Any, *, meta_only: bool, tolerance_scale: float) -> str | None:
    if isinstance(expected, torch.Tensor) or isinstance(actual, torch.Tensor):
        if not (isinstance(expected, torch.Tensor) and isinstance(actual, torch.Tensor)):
            return f"expected {_describe_leaf(expected)}, got {_describe_leaf(actual)}"
        return compare_tensors(expected, actual, meta_only=meta_only, tolerance_scale=tolerance_scale)
    if isinstance(expected, float) and isinstance(actual, float):
        if meta_only or (math.isnan(expected) and math.isnan(actual)):
            return None
        if math.isclose(expected, actual, rel_tol=1.3e-6 * tolerance_scale, abs_tol=1e-5 * tolerance_scale):
            return None
        return f"expected {expected!r}, got {actual!r}"
    if type(expected) is not type(actual):
        return f"expected {_describe_leaf(expected)}, got {_describe_leaf(actual)}"
    if meta_only and isinstance(expected, (int, bool)):
        return None
    try:
        equal = bool(expected == actual)
    except Exception:  # an object whose == is not a plain predicate
        equal = repr(expected) == repr(actual)
    return None if equal else f"expected {_describe_leaf(expected)}, got {_describe_leaf(actual)}"


def compare_json(expected: Any, actual: Any, *, label: str = "fingerprint", limit: int = 8) -> str | None:
    """Diff of two JSON-able structures: up to ``limit`` differing paths, or None."""
    diffs: list[str] = []
    _walk_json(expected, actual, label, diffs, limit)
    if not diffs:
        return None
    return "\n".join(diffs)


def _walk_json(a: Any, b: Any, path: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            if key not in a:
                out.append(f"{path}.{key}: only on the right: {_short(b[key])}")
            elif key not in b:
                out.append(f"{path}.{key}: only on the left: {_short(a[key])}")
            else:
                _walk_json(a[key], b[key], f"{path}.{key}", out, limit)
            if len(out) >= limit:
                return
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}: {_short(a)} vs {_short(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _walk_json(x, y, f"{path}[{i}]", out, limit)
        return
    if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        out.append(f"{path}: {_short(a)} vs {_short(b)}")
