"""Patterns of the argument-normalizing transforms: ``normalize_args`` (``NormalizeArgs``
with and without recorded types), ``normalize_operators`` and ``annotate_types``.

Each pattern plants a call whose arguments ``torch/fx/operator_schemas.py`` and
``torch/fx/experimental/normalize.py`` branch on:

* ``aten_overload_call``: ``torch.ops.aten`` overloads and packets (their schemas name the
  first argument ``self``), positional or by keyword;
* ``scalar_self_call``: ``torch.pow(2.0, x)``, ``torch.remainder(3.0, d)``,
  ``torch.where(c, 2.0, x)``: overloads whose ``self`` is a number;
* ``nonzero_call``: ``torch.nonzero``, whose signatures are written by hand;
* ``keyword_operand``: a binary torch function given a node by keyword;
* ``tuple_result``: a call whose result is not a tensor (``torch.max(x, d)``,
  ``torch.sort``, ``torch.var_mean``, ``torch.frexp``), then an element of it;
* ``keyword_sequence``: a tuple or list by keyword (``F.conv2d(..., stride=(2, 2))``,
  ``torch.sum(x, dim=(0,))``);
* ``keyword_operator``: ``torch.add(a, b, alpha=2)``, ``torch.div(a, b, rounding_mode=...)``
  and their neutral spellings (``alpha=1``), which ``NormalizeOperators`` respells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from generators.focus._plant import Pattern
from generators.vocab.base import (
    FLOAT_LIMIT,
    MAX_DIM,
    MAX_ELEMENTS,
    Gene,
    OpKind,
    Planner,
    Value,
    Writer,
    numel,
)
from generators.vocab.schema import Int

Bound = Callable[[float, float], float]


def _operand(p: Planner, g: Gene, a: Value) -> Value:
    """A second operand of ``a``'s shape: an existing value, a new input, or ``a`` itself."""
    mode = g.int(0, 2)
    if mode == 0:
        found = p.float_value(g, lambda v: v.shape == a.shape and v.name != a.name)
        if found is not None:
            return found
    if mode <= 1:
        return p.new_input(a.shape)
    return a


def _float(p: Planner, g: Gene, limit: float = FLOAT_LIMIT / 4, elements: int = MAX_ELEMENTS) -> Value:
    x = p.float_value(g, lambda v: bool(v.shape) and v.bound <= limit and numel(v.shape) <= elements)
    return x if x is not None else p.new_input((g.int(1, 3), g.int(1, 4)))


class _Styled(Pattern):
    """A pattern that adds one node of its own kind: ``STYLES[style]`` formatted with the
    operand names (``{0}``, ``{1}``)."""

    in_specs = True
    cost = 2
    #: (template, operands, bound of the result from the operands' bounds)
    STYLES: tuple[tuple[str, int, Bound], ...] = ()

    def plan(self, p: Planner, g: Gene) -> Value | None:
        a = _float(p, g)
        style = g.int(0, len(self.STYLES) - 1)
        _, arity, bound = self.STYLES[style]
        ins = [a] if arity == 1 else [a, _operand(p, g, a)]
        out = bound(a.bound, ins[-1].bound)
        if out > FLOAT_LIMIT:
            return None
        return p.add(self.name, ins, self.attrs(g, style), a.shape, a.dtype, out)

    def attrs(self, g: Gene, style: int) -> dict[str, Any]:
        return {"style": style}

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        template = self.STYLES[node["attrs"]["style"]][0]
        w.assign(node, template.format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, len(self.STYLES) - 1)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        style = attrs.get("style") if isinstance(attrs, dict) else None
        if isinstance(style, int) and 0 <= style < len(self.STYLES):
            n = self.STYLES[style][1]
            return (n, n)
        return (1, 2)


def _sum(a: float, b: float) -> float:
    return a + b


def _same(a: float, b: float) -> float:
    return a


class AtenOverloadCall(_Styled):
    """``torch.ops.aten.add.Tensor(x, y)``, ``torch.ops.aten.relu(x)``, ...: an aten overload
    or overload packet, whose first parameter is named ``self``, positional or by keyword."""

    name = "aten_overload_call"
    STYLES = (
        ("torch.ops.aten.add.Tensor({0}, {1})", 2, _sum),
        ("torch.ops.aten.sub.Tensor({0}, {1})", 2, _sum),
        ("torch.ops.aten.mul.Tensor({0}, {1})", 2, lambda a, b: a * b),
        ("torch.ops.aten.add.Scalar({0}, 2.0)", 1, lambda a, b: a + 2.0),
        ("torch.ops.aten.mul.Scalar({0}, 0.5)", 1, lambda a, b: a * 0.5),
        ("torch.ops.aten.relu.default({0})", 1, _same),
        ("torch.ops.aten.neg.default({0})", 1, _same),
        ("torch.ops.aten.tanh.default({0})", 1, lambda a, b: 1.0),
        ("torch.ops.aten.add({0}, {1})", 2, _sum),
        ("torch.ops.aten.mul({0}, {1})", 2, lambda a, b: a * b),
        ("torch.ops.aten.relu({0})", 1, _same),
        ("torch.ops.aten.add.Tensor(self={0}, other={1})", 2, _sum),
        ("torch.ops.aten.sigmoid.default(self={0})", 1, lambda a, b: 1.0),
    )


class ScalarSelfCall(Pattern):
    """A torch function called with a number where one of its schemas has a Scalar ``self``:
    ``torch.pow(2.0, x)``, ``torch.remainder(3.0, x.abs() + 1.0)``, ``torch.where(x > 0, 2.0, x)``."""

    name = "scalar_self_call"
    in_specs = True
    cost = 2
    STYLES = (
        "torch.pow(2.0, {0})",
        "torch.pow(0.5, {0})",
        "torch.remainder(3.0, {0}.abs() + 1.0)",
        "torch.where({0} > 0, 2.0, {0})",
    )

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _float(p, g, limit=8.0)
        style = g.int(0, len(self.STYLES) - 1)
        bound = 2.0**x.bound if style < 2 else (3.0 if style == 2 else max(2.0, x.bound))
        return p.add(self.name, [x], {"style": style}, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, self.STYLES[node["attrs"]["style"]].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, len(self.STYLES) - 1)}


class NonzeroCall(Pattern):
    """``torch.nonzero`` of a tensor with no zero element (so its result's shape, (numel,
    rank), is known when planning): an int64 value."""

    name = "nonzero_call"
    in_specs = True
    cost = 2
    STYLES = (
        "torch.nonzero({0}.abs() + 1.0)",
        "torch.nonzero({0} == {0})",
        "torch.nonzero(torch.ones_like({0}), as_tuple=False)",
        "torch.nonzero(input={0}.abs() + 0.5)",
    )

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _float(p, g, elements=MAX_ELEMENTS // 16)
        shape = (numel(x.shape), len(x.shape))
        style = g.int(0, len(self.STYLES) - 1)
        return p.add(self.name, [x], {"style": style}, shape, "int64", float(max(x.shape) - 1), nonneg=True)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, self.STYLES[node["attrs"]["style"]].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, len(self.STYLES) - 1)}


class KeywordOperand(_Styled):
    """A binary torch function given a node by keyword: ``torch.add(x, other=y)``."""

    name = "keyword_operand"
    STYLES = (
        ("torch.add({0}, other={1})", 2, _sum),
        ("torch.mul({0}, other={1})", 2, lambda a, b: a * b),
        ("torch.sub(input={0}, other={1})", 2, _sum),
        ("torch.maximum({0}, other={1})", 2, max),
        ("torch.atan2({0}, other={1})", 2, lambda a, b: 3.2),
    )


class KeywordOperator(_Styled):
    """A respellable torch function with a keyword argument: away from its neutral value
    (``alpha=2``, ``rounding_mode='floor'``) or at it (``alpha=1``)."""

    name = "keyword_operator"
    STYLES = (
        ("torch.add({0}, {1}, alpha=2)", 2, lambda a, b: a + 2 * b),
        ("torch.sub({0}, {1}, alpha=2)", 2, lambda a, b: a + 2 * b),
        ("torch.div({0}, {1}.abs() + 1.0, rounding_mode='floor')", 2, lambda a, b: a + 1.0),
        ("torch.div({0}, {1}.abs() + 1.0, rounding_mode='trunc')", 2, _same),
        ("torch.add({0}, 2.0, alpha=3)", 1, lambda a, b: a + 6.0),
        ("torch.add({0}, {1}, alpha=1)", 2, _sum),
        ("torch.div({0}, {1}.abs() + 1.0, rounding_mode=None)", 2, _same),
        ("torch.mul({0}, {1})", 2, lambda a, b: a * b),
    )


#: ``(template, shape rule, bound, dtype)`` of :class:`TupleResult`; ``{d}`` is the dim.
_TUPLES: tuple[tuple[str, str, Bound, str], ...] = (
    ("torch.max({x}, {d})[0]", "drop", _same, "float"),
    ("torch.min({x}, {d})[0]", "drop", _same, "float"),
    ("torch.sort({x}, {d})[0]", "keep", _same, "float"),
    ("torch.var_mean({x}, {d})[1]", "drop", _same, "float"),
    ("torch.frexp({x})[0]", "keep", lambda b, n: 1.0, "float"),
    ("torch.sort({x}, {d})[1]", "keep", lambda b, n: n - 1.0, "int64"),
    ("torch.max({x}, {d}, keepdim=True)[1]", "one", lambda b, n: n - 1.0, "int64"),
)


class TupleResult(Pattern):
    """``t = torch.max(x, d)`` (a call whose result is a tuple, not a tensor), then ``t[i]``."""

    name = "tuple_result"
    in_specs = True
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: any(n >= 2 for n in v.shape))
        if x is None:
            x = p.new_input((g.int(2, 4), g.int(1, 4)))
        dims = [d for d, n in enumerate(x.shape) if n >= 2]
        d = dims[g.int(0, len(dims) - 1)]
        style = g.int(0, len(_TUPLES) - 1)
        _, rule, bound, dtype = _TUPLES[style]
        shape = {"drop": x.shape[:d] + x.shape[d + 1 :], "keep": x.shape,
                 "one": x.shape[:d] + (1,) + x.shape[d + 1 :]}[rule]
        ints = dtype == "int64"
        return p.add(self.name, [x], {"style": style, "dim": d}, shape, "int64" if ints else x.dtype,
                     bound(x.bound, float(x.shape[d])), nonneg=ints)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.assign(node, _TUPLES[a["style"]][0].format(x=node["in"][0], d=a["dim"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, len(_TUPLES) - 1), "dim": Int(0, 5)}


class KeywordSequence(Pattern):
    """A tuple or list by keyword: ``F.conv2d(x, w, stride=(s, s))``, ``F.conv1d(x, w,
    stride=(s,))``, ``torch.sum(x, dim=(d,))``, ``torch.mean(x, dim=[d])``,
    ``torch.amax(x, dim=(d,), keepdim=True)``."""

    name = "keyword_sequence"
    in_specs = True
    cost = 3
    REDUCTIONS = ("torch.sum({x}, dim=({d},))", "torch.mean({x}, dim=[{d}])", "torch.amax({x}, dim=({d},), keepdim=True)")

    def plan(self, p: Planner, g: Gene) -> Value | None:
        style = g.int(0, 4)
        if style < 2:
            return self._conv(p, g, nd=2 - style)
        x = _float(p, g)
        d = g.int(0, len(x.shape) - 1)
        kind = style - 2
        shape = x.shape[:d] + ((1,) if kind == 2 else ()) + x.shape[d + 1 :]
        bound = x.bound * x.shape[d] if kind == 0 else x.bound
        if bound > FLOAT_LIMIT:
            return None
        return p.add(self.name, [x], {"style": style, "dim": d, "stride": 1}, shape, x.dtype, bound)

    def _conv(self, p: Planner, g: Gene, nd: int) -> Value | None:
        x = p.float_value(g, lambda v: len(v.shape) == nd + 2 and min(v.shape[2:]) >= 2 and v.bound <= 100.0)
        if x is None:
            x = p.new_input((g.int(1, 2), g.int(1, 3), *[g.int(3, 6) for _ in range(nd)]))
        cin, k, stride = x.shape[1], g.int(1, 2), g.int(1, 2)
        out = tuple((s - k) // stride + 1 for s in x.shape[2:])
        cout = g.int(1, 4)
        fan_in = cin * k**nd
        w = p.new_param((cout, cin, *[k] * nd), 1.0 / math.sqrt(fan_in))
        shape = (x.shape[0], cout, *out)
        bound = math.sqrt(fan_in) * x.bound
        if bound > FLOAT_LIMIT or numel(shape) > MAX_ELEMENTS or min(out) < 1:
            return None
        return p.add(self.name, [x, w], {"style": 2 - nd, "dim": 0, "stride": stride}, shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a, ins = node["attrs"], node["in"]
        if a["style"] < 2:
            nd = 2 - a["style"]
            stride = f"({a['stride']}, {a['stride']})" if nd == 2 else f"({a['stride']},)"
            w.assign(node, f"F.conv{nd}d({ins[0]}, {ins[1]}, stride={stride})")
        else:
            w.assign(node, self.REDUCTIONS[a["style"] - 2].format(x=ins[0], d=a["dim"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, 4), "dim": Int(0, 5), "stride": Int(1, MAX_DIM)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        style = attrs.get("style") if isinstance(attrs, dict) else None
        return (2, 2) if isinstance(style, int) and style < 2 else (1, 1)


KINDS: tuple[OpKind, ...] = (
    AtenOverloadCall(),
    ScalarSelfCall(),
    NonzeroCall(),
    KeywordOperand(),
    KeywordOperator(),
    TupleResult(),
    KeywordSequence(),
)
