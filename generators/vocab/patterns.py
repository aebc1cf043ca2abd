"""Program patterns the fx transforms are sensitive to: parameters and buffers, trace-time
constants, random draws, asserts, dead code, and forward arguments with defaults, fixed at
trace time (``concrete_args``) or collected by ``**kwargs``."""

from __future__ import annotations

import math
from typing import Any

from generators.vocab.base import (
    FLOAT_LIMIT,
    MAX_DIM,
    Gene,
    OpKind,
    Planner,
    Value,
    Writer,
    fmt_float,
)
from generators.vocab.schema import MAX_RANK, MAX_SIZE, Float, Int, shape, style


def _shape_lit(shape: list[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Param(OpKind):
    """An ``nn.Parameter`` read in forward (planned by other kinds that need weights)."""

    name = "param"
    category = "state"
    weight = 0.0

    def plan(self, p: Planner, g: Gene) -> Value | None:
        return None

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        shape, scale = _shape_lit(node["shape"]), fmt_float(node["attrs"]["scale"])
        w.member(f"self.{node['id']} = nn.Parameter((torch.rand({shape}) * 2.0 - 1.0) * {scale})")
        w.assign(node, f"self.{node['id']}")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"scale": Float()}

    def state(self, node: dict[str, Any]) -> int:
        return math.prod(node["shape"] or ())

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (0, 0)


class Buffer(OpKind):
    """A registered buffer (state that is not a parameter) combined with a value."""

    name = "buffer"
    category = "state"
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: bool(v.shape))
        if x is None:
            return None
        shape = list(x.shape[g.int(0, len(x.shape) - 1) :])
        op = g.int(0, 1)
        bound = x.bound + 1.0 if op == 0 else x.bound
        return p.add(self.name, [x], {"shape": shape, "op": op}, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        attr = f"{node['id']}_buf"
        w.member(f"self.register_buffer({attr!r}, torch.rand({_shape_lit(node['attrs']['shape'])}))")
        sym = "+" if node["attrs"]["op"] == 0 else "*"
        w.assign(node, f"{node['in'][0]} {sym} self.{attr}")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"shape": shape(), "op": Int(0, 1)}

    def state(self, node: dict[str, Any]) -> int:
        return math.prod(node["attrs"]["shape"])


class Constant(OpKind):
    """A tensor built in forward from no traced input (``torch.ones``, ``torch.arange``, a
    ``torch.rand`` with a seeded generator): tracing evaluates it once and stores the
    result on the GraphModule as a ``_tensor_constant``."""

    name = "constant"
    category = "constants"
    styles = (
        "torch.ones({s}, dtype={dt})",
        "torch.full({s}, 0.5, dtype={dt})",
        "torch.arange({n}, dtype={dt}).reshape({s}) / {n}.0",
        "torch.rand({s}, generator=torch.Generator().manual_seed({k}), dtype={dt})",
        "torch.linspace(-1.0, 1.0, {n}, dtype={dt}).reshape({s})",
    )

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: bool(v.shape))
        shape = list(x.shape[g.int(0, len(x.shape) - 1) :]) if x is not None else [g.int(1, MAX_DIM)]
        style = g.int(0, len(self.styles) - 1)
        value = p.add(self.name, [], {"style": style, "shape": shape, "key": g.int(0, 99)}, shape, p.dtype, 1.0)
        # the traced module keeps one tensor across calls: never write it, nor what is
        # computed from it alone
        value.storage, value.traced = None, False
        return value

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        n = 1
        for d in a["shape"]:
            n *= d
        w.assign(node, self.styles[a["style"]].format(s=_shape_lit(a["shape"]), dt=w.torch_dtype, n=n, k=a["key"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": style(self.styles), "shape": shape(), "key": Int(0, 1 << 16)}

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        return (0, 0)


class Random(OpKind):
    """Random draws in forward: ``torch.rand`` with no traced input (frozen by tracing) and
    ``torch.rand_like`` (traced). Cases using it compare by shape and dtype only."""

    name = "random"
    category = "stochastic"
    weight = 0.2
    cost = 3
    stochastic = True

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g)
        if x is None:
            return None
        style = g.int(0, 2)
        p.stochastic = True
        return p.add(self.name, [x], {"style": style, "shape": list(x.shape)}, x.shape, x.dtype, x.bound + 1.0, cost=2)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x, a = node["in"][0], node["attrs"]
        noise = (
            f"torch.rand({_shape_lit(a['shape'])}, dtype={w.torch_dtype})",
            f"torch.rand_like({x})",
            f"torch.randn_like({x}).clamp(-1.0, 1.0)",
        )[a["style"]]
        w.assign(node, f"{x} + {noise}")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, 2), "shape": shape()}


class Assert(OpKind):
    """A traced check (``torch._assert`` on a run-time shape) or a plain ``assert`` on
    module state, which tracing evaluates once and drops."""

    name = "assert"
    category = "control"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.choose(g, lambda v: bool(v.shape))
        if x is None:
            return None
        style = g.int(0, 2)
        d = g.int(0, len(x.shape) - 1)
        attrs = {"style": style, "dim": d, "size": x.shape[d], "rank": len(x.shape)}
        return p.add(self.name, [x], attrs, (), "none", 0.0, usable=False, cost=4 if style < 2 else 0)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x, a = node["in"][0], node["attrs"]
        if a["style"] == 0:
            w.line(f"torch._assert({x}.shape[{a['dim']}] == {a['size']}, 'dimension {a['dim']} of {x} changed')")
        elif a["style"] == 1:
            w.line(f"torch._assert({x}.dim() == {a['rank']}, 'rank of {x} changed')")
        else:
            w.member(f"self.{node['id']}_rank = {a['rank']}")
            w.line(f"assert self.{node['id']}_rank == {a['rank']}, 'module state changed'")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, 2), "dim": Int(0, MAX_RANK - 1), "size": Int(0, MAX_SIZE), "rank": Int(1, MAX_RANK)}


class DeadCode(OpKind):
    """A computation whose result nothing reads (tracing keeps it; dead-code elimination
    may drop it)."""

    name = "dead_code"
    category = "control"

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g)
        if x is None:
            return None
        return p.add(self.name, [x], {"style": g.int(0, 1)}, x.shape, x.dtype, x.bound, usable=False)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x = node["in"][0]
        w.assign(node, (f"{x} * 2.0", f"torch.tanh({x})")[node["attrs"]["style"]])

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, 1)}


class DefaultArg(OpKind):
    """A forward argument with a default: a float traced as a placeholder, a bool fixed
    by ``concrete_args`` choosing a branch, or a value read from ``**kwargs``."""

    name = "default_arg"
    category = "signature"
    weight = 0.5
    cost = 4  # a new placeholder, and for the flag its specialisation guard

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: v.bound <= FLOAT_LIMIT / 2)
        if x is None:
            return None
        style = g.int(0, 2)
        if style == 0:
            p.signature["default"] = {"name": "alpha", "value": 0.5}
        elif style == 1:
            if p.signature["flag"] is None:
                p.signature["flag"] = {"name": "flag", "value": g.chance(50)}
        else:
            p.signature["varkw"] = True
        return p.add(self.name, [x], {"style": style}, x.shape, x.dtype, x.bound + 1.0, cost=1 if style == 1 else 2)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        x, style = node["in"][0], node["attrs"]["style"]
        if style == 0:
            w.assign(node, f"{x} * alpha")
        elif style == 1:
            w.line("if flag:")
            w.line(f"    {node['id']} = {x} + 1.0")
            w.line("else:")
            w.line(f"    {node['id']} = {x} - 1.0")
        else:
            w.assign(node, f"{x} * kwargs.get('scale', 1.0)")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, 2)}


class Skip(OpKind):
    """Plans nothing. It is the first entry of every kind table, so when hypothesis shrinks
    a gene's kind choice to its minimum the gene stops contributing a node: shrinking a
    kind reaches "delete this op" even where deleting the gene itself does not shrink."""

    name = "skip"
    category = "internal"
    weight = 0.0
    cost = 0

    def plan(self, p: Planner, g: Gene) -> Value | None:
        return None

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        raise AssertionError("skip never adds a node")


KINDS: tuple[OpKind, ...] = (Skip(), Param(), Buffer(), Constant(), Random(), Assert(), DeadCode(), DefaultArg())
