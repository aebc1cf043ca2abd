"""Elementwise kinds: unary maths and activations, binary arithmetic with tensor or scalar
operands, comparisons, logical ops, selection, casts and in-place updates."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from generators.vocab.base import (
    FLOAT_DTYPES,
    FLOAT_LIMIT,
    INT_DTYPES,
    INT_LIMIT,
    MAX_ELEMENTS,
    Gene,
    OpKind,
    Planner,
    Value,
    Writer,
    broadcast,
    broadcasts_to,
    numel,
    scalar_literal,
)
from generators.vocab.schema import Bool, Float, Int, OneOf, style


def _limit(dtype: str) -> float:
    return INT_LIMIT if dtype in INT_DTYPES else FLOAT_LIMIT


class Unary(OpKind):
    """``out = f(x)`` written in one of several call styles (function, method, operator,
    keyword arguments), all computing the same thing."""

    category = "unary"

    def __init__(
        self,
        name: str,
        styles: tuple[str, ...],
        bound: Callable[[float], float],
        *,
        max_in: float = FLOAT_LIMIT,
        ints: bool = False,
        cost: int = 1,
        category: str = "unary",
        weight: float = 1.0,
    ) -> None:
        self.name = name
        self.styles = styles
        self.bound = bound
        self.max_in = max_in
        self.ints = ints
        self.cost = cost
        self.category = category
        self.weight = weight

    def plan(self, p: Planner, g: Gene) -> Value | None:
        def ok(v: Value) -> bool:
            typed = p.is_float(v) or (self.ints and v.dtype in INT_DTYPES)
            return typed and v.bound <= self.max_in

        x = p.choose(g, ok)
        if x is None:
            return None
        out = self.bound(x.bound)
        if out > _limit(x.dtype):
            return None
        style = g.int(0, len(self.styles) - 1)
        return p.add(self.name, [x], {"style": style}, x.shape, x.dtype, out, cost=self.cost, nonneg=x.nonneg and self.name in ("relu", "abs"))

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, self.styles[node["attrs"]["style"]].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": style(self.styles)}


def _same(b: float) -> float:
    return b


def _one(b: float) -> float:
    return 1.0


UNARY: tuple[Unary, ...] = (
    Unary("relu", ("torch.relu({0})", "{0}.relu()", "F.relu({0})"), _same, ints=True, weight=2.0),
    Unary("gelu", ("F.gelu({0})", "F.gelu({0}, approximate='tanh')"), _same),
    Unary("silu", ("F.silu({0})", "{0} * torch.sigmoid({0})"), _same, cost=2),
    Unary("sigmoid", ("torch.sigmoid({0})", "{0}.sigmoid()", "F.sigmoid({0})"), _one),
    Unary("tanh", ("torch.tanh({0})", "{0}.tanh()"), _one),
    Unary("leaky_relu", ("F.leaky_relu({0}, negative_slope=0.1)", "F.leaky_relu({0}, 0.2)"), _same),
    Unary("elu", ("F.elu({0})", "F.elu({0}, alpha=0.5)"), lambda b: b + 1.0),
    Unary("selu", ("F.selu({0})", "torch.selu({0})"), lambda b: 1.06 * b + 2.0),
    Unary("softplus", ("F.softplus({0})", "F.softplus({0}, beta=2.0)"), lambda b: b + 1.0),
    Unary("hardtanh", ("F.hardtanh({0})", "F.hardtanh({0}, min_val=-0.5, max_val=0.5)"), _one),
    Unary("hardswish", ("F.hardswish({0})",), _same),
    Unary("mish", ("F.mish({0})",), _same),
    Unary("softsign", ("F.softsign({0})",), _one),
    Unary("logsigmoid", ("F.logsigmoid({0})",), lambda b: b + 1.0),
    Unary("relu6", ("F.relu6({0})",), lambda b: 6.0),
    Unary("abs", ("torch.abs({0})", "{0}.abs()", "abs({0})"), _same, ints=True),
    Unary("neg", ("torch.neg({0})", "-{0}", "{0}.neg()"), _same, ints=True),
    Unary("exp", ("torch.exp({0})", "{0}.exp()"), math.exp, max_in=8.0),
    Unary("log", ("torch.log({0}.abs() + 1.0)", "torch.log1p({0}.abs())"), lambda b: math.log1p(b), cost=3),
    Unary("sqrt", ("torch.sqrt({0}.abs())", "{0}.abs().sqrt()"), math.sqrt, cost=2),
    Unary("rsqrt", ("torch.rsqrt({0}.abs() + 1.0)",), _one, cost=3),
    Unary("reciprocal", ("1.0 / ({0}.abs() + 1.0)", "torch.reciprocal({0}.abs() + 1.0)"), _one, cost=3),
    Unary("sin", ("torch.sin({0})", "{0}.sin()"), _one),
    Unary("cos", ("torch.cos({0})",), _one),
    Unary("atan", ("torch.atan({0})",), lambda b: 1.6),
    Unary("erf", ("torch.erf({0})",), _one),
    Unary("sign", ("torch.sign({0})", "{0}.sign()"), _one, ints=True),
    Unary("floor", ("torch.floor({0})", "{0}.round()", "torch.ceil({0})"), lambda b: b + 1.0),
    Unary("square", ("{0} * {0}", "torch.square({0})", "{0} ** 2", "{0}.pow(2)"), lambda b: b * b, max_in=100.0, ints=True),
    Unary(
        "clamp",
        ("torch.clamp({0}, min=-0.5, max=0.5)", "{0}.clamp(-1, 1)", "{0}.clamp(min=0)", "torch.clip({0}, -2.0, 2.0)"),
        _same,
    ),
)


class Binary(OpKind):
    """``out = a (op) b`` where ``b`` is a scalar, an existing value that broadcasts with
    ``a``, a new parameter, a new input, or ``a`` itself (chosen by the gene)."""

    category = "binary"

    def __init__(
        self,
        name: str,
        tensor_styles: tuple[str, ...],
        scalar_styles: tuple[str, ...],
        bound: Callable[[float, float], float],
        *,
        scalars: tuple[float, ...] = (2.0, 0.5, -1.0),
        ints: bool = True,
        out_dtype: str | None = None,
        cost: int = 1,
        category: str = "binary",
        max_in: float = FLOAT_LIMIT,
    ) -> None:
        self.name = name
        self.tensor_styles = tensor_styles
        self.scalar_styles = scalar_styles
        self.bound = bound
        self.scalars = scalars
        self.ints = ints
        self.out_dtype = out_dtype
        self.cost = cost
        self.category = category
        self.max_in = max_in

    def plan(self, p: Planner, g: Gene) -> Value | None:
        def ok(v: Value) -> bool:
            typed = p.is_float(v) or (self.ints and v.dtype in INT_DTYPES)
            return typed and v.bound <= self.max_in

        a = p.choose(g, ok)
        if a is None:
            return None
        mode = g.int(0, 4) if self.tensor_styles else 0
        if not self.scalar_styles and mode == 0:
            mode = 4
        other: Value | None = None
        scalar: float | None = None
        is_int = a.dtype in INT_DTYPES
        if mode == 1:
            other = p.choose(g, lambda v: v.dtype == a.dtype and v.bound <= self.max_in and _fits(a.shape, v.shape))
        elif mode == 2 and not is_int and a.shape:
            cut = g.int(0, len(a.shape) - 1)
            other = p.new_param(a.shape[cut:])
        elif mode == 3:
            other = p.new_input(a.shape, a.dtype, high=4)
        elif mode == 4:
            other = a
        if other is None:
            if not self.scalar_styles:
                other = a
            else:
                scalar = g.pick(self.scalars)
                if is_int:
                    scalar = int(scalar) or 2
        if other is not None:
            shape = broadcast(a.shape, other.shape)
            assert shape is not None
            out = self.bound(a.bound, other.bound)
            style = g.int(0, len(self.tensor_styles) - 1)
            attrs: dict[str, Any] = {"style": style}
            ins = [a, other]
        else:
            shape = a.shape
            out = self.bound(a.bound, abs(float(scalar)))
            style = g.int(0, len(self.scalar_styles) - 1)
            attrs = {"style": style, "scalar": scalar}
            ins = [a]
        dtype = self.out_dtype or a.dtype
        if out > _limit(dtype) or numel(shape) > MAX_ELEMENTS:
            return None
        return p.add(self.name, ins, attrs, shape, dtype, out, cost=self.cost, nonneg=dtype == "bool")

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        attrs = node["attrs"]
        if "scalar" in attrs:
            lit = scalar_literal(attrs["scalar"], "int64" if isinstance(attrs["scalar"], int) else "float32")
            w.assign(node, self.scalar_styles[attrs["style"]].format(node["in"][0], lit))
        else:
            w.assign(node, self.tensor_styles[attrs["style"]].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(attrs, dict) and "scalar" in attrs:
            return {"style": style(self.scalar_styles), "scalar": Float()}
        return {"style": style(self.tensor_styles)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (1, 1) if "scalar" in attrs else (2, 2)


def _fits(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    shape = broadcast(a, b)
    return shape is not None and numel(shape) <= MAX_ELEMENTS


def _cmp(name: str, sym: str) -> Binary:
    return Binary(
        name,
        (f"{{0}} {sym} {{1}}", f"torch.{name}({{0}}, {{1}})", f"{{0}}.{name}({{1}})"),
        (f"{{0}} {sym} {{1}}", f"torch.{name}({{0}}, {{1}})"),
        lambda a, b: 1.0,
        scalars=(0.0, 0.5, -0.25),
        out_dtype="bool",
        category="compare",
    )


BINARY: tuple[Binary, ...] = (
    Binary(
        "add",
        ("{0} + {1}", "torch.add({0}, {1})", "{0}.add({1})", "torch.add({0}, {1}, alpha=2)"),
        ("{0} + {1}", "{1} + {0}", "torch.add({0}, {1})"),
        lambda a, b: a + 2 * b,
    ),
    Binary(
        "sub",
        ("{0} - {1}", "torch.sub({0}, {1})", "{0}.sub({1})", "torch.sub({0}, {1}, alpha=2)"),
        ("{0} - {1}", "{1} - {0}", "torch.rsub({0}, {1})"),
        lambda a, b: a + 2 * b,
    ),
    Binary(
        "mul",
        ("{0} * {1}", "torch.mul({0}, {1})", "{0}.mul({1})"),
        ("{0} * {1}", "{1} * {0}", "torch.mul({0}, {1})"),
        lambda a, b: a * b,
    ),
    Binary(
        "div",
        ("{0} / ({1}.abs() + 1.0)", "torch.div({0}, {1}.abs() + 1.0)", "torch.div({0}, {1}.abs() + 1.0, rounding_mode='floor')"),
        ("{0} / {1}", "torch.div({0}, {1})", "torch.true_divide({0}, {1})"),
        lambda a, b: 2.0 * a + 1.0,
        scalars=(2.0, 4.0, -2.0),
        ints=False,
        cost=3,
    ),
    Binary(
        "maximum",
        ("torch.maximum({0}, {1})", "torch.max({0}, {1})", "{0}.maximum({1})"),
        ("torch.clamp_min({0}, {1})", "{0}.clamp(min={1})"),
        max,
    ),
    Binary(
        "minimum",
        ("torch.minimum({0}, {1})", "torch.min({0}, {1})"),
        ("torch.clamp_max({0}, {1})", "{0}.clamp(max={1})"),
        max,
    ),
    Binary("pow", (), ("{0} ** 2", "torch.pow({0}, 3)", "{0}.pow(2)"), lambda a, b: a**3, scalars=(2.0,), max_in=20.0, ints=False),
    Binary("atan2", ("torch.atan2({0}, {1})",), (), lambda a, b: 3.2, ints=False),
    Binary("remainder", (), ("torch.remainder({0}, {1})", "{0} % {1}"), lambda a, b: b, scalars=(2.0, 3.0, 1.5)),
    Binary("lerp", ("torch.lerp({0}, {1}, 0.25)",), (), max, ints=False),
    _cmp("gt", ">"),
    _cmp("lt", "<"),
    _cmp("ge", ">="),
    _cmp("le", "<="),
    _cmp("eq", "=="),
    _cmp("ne", "!="),
)


class Logical(OpKind):
    """``&``, ``|``, ``^`` and ``torch.logical_*`` on boolean values."""

    name = "logical"
    category = "compare"
    styles = ("{0} & {1}", "{0} | {1}", "torch.logical_and({0}, {1})", "torch.logical_or({0}, {1})", "torch.logical_xor({0}, {1})")

    def plan(self, p: Planner, g: Gene) -> Value | None:
        a = p.choose(g, lambda v: v.dtype == "bool")
        if a is None:
            return None
        b = p.choose(g, lambda v: v.dtype == "bool" and _fits(a.shape, v.shape)) or a
        shape = broadcast(a.shape, b.shape)
        assert shape is not None
        return p.add(self.name, [a, b], {"style": g.int(0, len(self.styles) - 1)}, shape, "bool", 1.0, nonneg=True)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, self.styles[node["attrs"]["style"]].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": style(self.styles)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (2, 2)


class LogicalNot(Logical):
    """``~mask`` / ``torch.logical_not`` on a boolean value."""

    name = "logical_not"
    styles = ("~{0}", "torch.logical_not({0})", "{0}.logical_not()")

    def plan(self, p: Planner, g: Gene) -> Value | None:
        a = p.choose(g, lambda v: v.dtype == "bool")
        if a is None:
            return None
        return p.add(self.name, [a], {"style": g.int(0, len(self.styles) - 1)}, a.shape, "bool", 1.0, nonneg=True)

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (1, 1)


class Where(OpKind):
    """``torch.where(cond, a, b)`` with an existing mask or an inline comparison, and a
    tensor or scalar ``b``."""

    name = "where"
    category = "select"
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        a = p.float_value(g)
        if a is None:
            return None
        cond = p.choose(g, lambda v: v.dtype == "bool" and _fits(a.shape, v.shape))
        shape = broadcast(a.shape, cond.shape) if cond is not None else a.shape
        assert shape is not None
        other = p.float_value(g, lambda v: _fits(shape, v.shape)) if g.chance(60) else None
        ins = [a]
        attrs: dict[str, Any] = {"cond": cond is not None, "scalar": None if other is not None else 0.0}
        if cond is not None:
            ins.append(cond)
        if other is not None:
            ins.append(other)
            shape = broadcast(shape, other.shape)
            assert shape is not None
        if numel(shape) > MAX_ELEMENTS:
            return None
        bound = max(a.bound, other.bound if other is not None else 0.0)
        return p.add(self.name, ins, attrs, shape, a.dtype, bound, cost=self.cost)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        ins = list(node["in"])
        a = ins.pop(0)
        cond = ins.pop(0) if node["attrs"]["cond"] else f"{a} > 0"
        other = ins.pop(0) if node["attrs"]["scalar"] is None else repr(float(node["attrs"]["scalar"]))
        w.assign(node, f"torch.where({cond}, {a}, {other})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"cond": Bool(), "scalar": Float(none=True)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        n = 1 + int(attrs["cond"]) + int(attrs["scalar"] is None)
        return (n, n)


class MaskedFill(OpKind):
    """``a.masked_fill(mask, value)``; the mask must broadcast to ``a``'s exact shape."""

    name = "masked_fill"
    category = "select"
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        a = p.float_value(g)
        if a is None:
            return None
        mask = p.choose(g, lambda v: v.dtype == "bool" and broadcasts_to(v.shape, a.shape))
        fill = g.pick((0.0, -1.0, 0.5))
        attrs = {"mask": mask is not None, "fill": fill, "style": g.int(0, 1)}
        ins = [a] if mask is None else [a, mask]
        return p.add(self.name, ins, attrs, a.shape, a.dtype, max(a.bound, 1.0), cost=self.cost)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["in"][0]
        mask = node["in"][1] if node["attrs"]["mask"] else f"({a} < 0)"
        fill = repr(float(node["attrs"]["fill"]))
        if node["attrs"]["style"] == 0:
            w.assign(node, f"{a}.masked_fill({mask}, {fill})")
        else:
            w.assign(node, f"torch.masked_fill({a}, {mask}, {fill})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"mask": Bool(), "fill": Float(), "style": Int(0, 1)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        n = 1 + int(attrs["mask"])
        return (n, n)


class Cast(OpKind):
    """dtype conversions: masks and integers to the module's float dtype, floats to int64."""

    name = "cast"
    category = "casts"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.choose(g, lambda v: v.dtype in ("bool", *INT_DTYPES) and v.bound <= FLOAT_LIMIT)
        if x is not None and g.chance(80):
            style = g.int(0, 2)
            return p.add(self.name, [x], {"to": p.dtype, "style": style}, x.shape, p.dtype, x.bound)
        x = p.float_value(g)
        if x is None:
            return None
        return p.add(self.name, [x], {"to": "int64", "style": g.int(0, 1)}, x.shape, "int64", x.bound + 1.0)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x = node["in"][0]
        to, style = node["attrs"]["to"], node["attrs"]["style"]
        if to == "int64":
            w.assign(node, (f"{x}.long()", f"{x}.to(torch.int64)")[style])
        else:
            w.assign(node, (f"{x}.to(torch.{to})", f"{x}.type(torch.{to})", f"{x}.to(dtype=torch.{to})")[style])

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        to = attrs.get("to") if isinstance(attrs, dict) else None
        return {"to": OneOf((*FLOAT_DTYPES, *INT_DTYPES)), "style": Int(0, 1 if to in INT_DTYPES else 2)}


#: In-place updates, with how each changes the magnitude bound of the written tensor.
_INPLACE_UNARY: tuple[tuple[str, Callable[[float], float]], ...] = (
    ("{0}.relu_()", _same),
    ("torch.relu_({0})", _same),
    ("{0}.clamp_(-1.0, 1.0)", _same),
    ("{0}.mul_(0.5)", _same),
    ("{0}.sigmoid_()", _one),
    ("{0}.tanh_()", _one),
    ("{0}.add_(1.0)", lambda b: b + 1.0),
    ("{0}.neg_()", _same),
    ("F.relu({0}, inplace=True)", _same),
)


class InPlace(OpKind):
    """An in-place update of an intermediate the forward owns (never an input, parameter,
    or overlapping view); later readers of that memory see the new values, which is what
    makes transforms that reorder nodes go wrong."""

    name = "inplace"
    category = "mutation"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: v.storage is not None)
        if x is None:
            return None
        if g.chance(40):
            other = p.float_value(g, lambda v: broadcasts_to(v.shape, x.shape) and x.storage not in (v.storage, v.views))
            if other is not None:
                op = g.int(0, 1)
                bound = x.bound + other.bound if op == 0 else x.bound * other.bound
                if bound > FLOAT_LIMIT:
                    return None
                p.mutate(x, bound)
                return p.add(self.name, [x, other], {"style": -1 - op}, x.shape, x.dtype, bound, view_of=x)
        style = g.int(0, len(_INPLACE_UNARY) - 1)
        bound = _INPLACE_UNARY[style][1](x.bound)
        p.mutate(x, bound)
        return p.add(self.name, [x], {"style": style}, x.shape, x.dtype, bound, view_of=x)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        style = node["attrs"]["style"]
        if style < 0:
            method = ("add_", "mul_")[-1 - style]
            w.assign(node, f"{node['in'][0]}.{method}({node['in'][1]})")
        else:
            w.assign(node, _INPLACE_UNARY[style][0].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(-2, len(_INPLACE_UNARY) - 1)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (2, 2) if attrs["style"] < 0 else (1, 1)


KINDS: tuple[OpKind, ...] = (*UNARY, *BINARY, Logical(), LogicalNot(), Where(), MaskedFill(), Cast(), InPlace())
