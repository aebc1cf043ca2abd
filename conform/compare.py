"""Comparators: each returns a diff (a string a person can read) or None when equal; the
``*_entries`` forms return the same difference as data (:class:`~conform.outcome.DiffEntry`:
path, left value, right value), which is what known divergences match.

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

from conform.outcome import DiffEntry


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
    if expected.device.type != "meta" and torch.equal(actual, expected):
        # identical values pass at any tolerance; assert_close's bookkeeping is not needed
        return None
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
    found = compare_values_entries(expected, actual, meta_only=meta_only, tolerance_scale=tolerance_scale,
                                   label=label)
    return found[0] if found else None


def compare_values_entries(
    expected: Any,
    actual: Any,
    *,
    meta_only: bool = False,
    tolerance_scale: float = 1.0,
    label: str = "output",
) -> tuple[str, list[DiffEntry]] | None:
    """:func:`compare_values`' diff and the first differing leaf as data (its path, the
    expected and the actual leaf described short), or None when equal. A structure
    difference is the entry at path ``label`` with the two tree specs."""
    exp_leaves, exp_spec = _flatten(expected)
    act_leaves, act_spec = _flatten(actual)
    if exp_spec != act_spec:
        return (f"{label} structure differs: expected {_short(exp_spec)}, got {_short(act_spec)}",
                [DiffEntry(label, _short(exp_spec), _short(act_spec))])
    for (path, exp), (_, act) in zip(exp_leaves, act_leaves):
        where = label + "".join(str(p) for p in path)
        diff = _compare_leaf(exp, act, meta_only=meta_only, tolerance_scale=tolerance_scale)
        if diff is not None:
            return f"{where}: {diff}", [DiffEntry(where, _describe_leaf(exp), _describe_leaf(act))]
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
    found = compare_json_entries(expected, actual, label=label, limit=limit)
    return found[0] if found else None


def compare_json_entries(expected: Any, actual: Any, *, label: str = "fingerprint",
                         limit: int = 8) -> tuple[str, list[DiffEntry]] | None:
    """:func:`compare_json`'s diff and its differing paths as data, or None when equal.

    Each entry's ``left`` is the value in ``expected`` and ``right`` the value in ``actual``
    (None where the key exists on the other side only); a list of another length is one
    entry at the list's path holding both lists.
    """
    out: list[tuple[str, DiffEntry]] = []
    _walk_json(expected, actual, label, out, limit)
    if not out:
        return None
    return "\n".join(line for line, _ in out), [entry for _, entry in out]


def _walk_json(a: Any, b: Any, path: str, out: list[tuple[str, DiffEntry]], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            if key not in a:
                out.append((f"{path}.{key}: only on the right: {_short(b[key])}",
                            DiffEntry(f"{path}.{key}", None, _short(b[key]))))
            elif key not in b:
                out.append((f"{path}.{key}: only on the left: {_short(a[key])}",
                            DiffEntry(f"{path}.{key}", _short(a[key]), None)))
            else:
                _walk_json(a[key], b[key], f"{path}.{key}", out, limit)
            if len(out) >= limit:
                return
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append((f"{path}: length {len(a)} vs {len(b)}: {_short(a)} vs {_short(b)}",
                        DiffEntry(path, _short(a), _short(b))))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _walk_json(x, y, f"{path}[{i}]", out, limit)
        return
    if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        out.append((f"{path}: {_short(a)} vs {_short(b)}", DiffEntry(path, _short(a), _short(b))))


LOW_PRECISION = (torch.bfloat16, torch.float16)


def has_low_precision(value: Any) -> bool:
    """Whether any tensor in ``value`` is bfloat16 or float16."""
    leaves, _ = pytree.tree_flatten(value)
    return any(isinstance(v, torch.Tensor) and v.dtype in LOW_PRECISION for v in leaves)


def no_worse_than(expected: Any, actual: Any, golden: Any, *, slack: float = 2.0) -> bool:
    """Whether ``actual`` is as close to the float64 ``golden`` result as ``expected`` is.

    For bfloat16 and float16 a transform that reorders or folds arithmetic (conv/bn fusion
    rounds once where eager rounds twice) legitimately lands a few ulps away from eager, so
    ``assert_close`` against eager is the wrong question for those dtypes. The right one:
    is the transformed result's error against the same computation in float64 at most
    ``slack`` times eager's own error (plus the dtype's tolerance)? Other leaves must still
    compare equal under the usual rules.
    """
    exp_leaves, exp_spec = pytree.tree_flatten(expected)
    act_leaves, act_spec = pytree.tree_flatten(actual)
    gold_leaves, gold_spec = pytree.tree_flatten(golden)
    if not (exp_spec == act_spec == gold_spec):
        return False
    from torch.testing._comparison import default_tolerances

    for exp, act, gold in zip(exp_leaves, act_leaves, gold_leaves):
        low = isinstance(exp, torch.Tensor) and exp.dtype in LOW_PRECISION
        if not low:
            if _compare_leaf(exp, act, meta_only=False, tolerance_scale=1.0) is not None:
                return False
            continue
        if not isinstance(act, torch.Tensor) or act.shape != exp.shape or act.dtype != exp.dtype:
            return False
        gold = gold.detach().to(torch.float64)
        finite = torch.isfinite(gold)
        if not torch.equal(finite, torch.isfinite(act.to(torch.float64))):
            return False
        if not finite.any():
            continue
        rtol, atol = default_tolerances(exp)
        err_eager = (exp.to(torch.float64) - gold)[finite].abs().max().item()
        err_actual = (act.to(torch.float64) - gold)[finite].abs().max().item()
        allowance = rtol * gold[finite].abs().max().item() + atol
        if err_actual > slack * err_eager + allowance:
            return False
    return True
