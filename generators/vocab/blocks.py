"""Nested modules: ``nn.Sequential`` stacks, hand-written blocks whose children have
children of their own (a gated block holds a residual block holds a feed-forward block),
and the conv/linear + batch-norm (+ relu) chains that fusion passes look for. Tracing
inlines every non-leaf module, so these produce ``call_module`` nodes with dotted targets
(``blk3.body.ff.up``)."""

from __future__ import annotations

import math
from typing import Any

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
from generators.vocab.schema import Bool, Int, Name, OneOf, size

_FEED_FORWARD = '''
class FeedForward(nn.Module):
    """Linear -> GELU -> Linear, back to the input width."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.up = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.down = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.down(self.act(self.up(x)))
'''

_RESIDUAL = '''
class ResidualBlock(nn.Module):
    """Pre-norm residual around a FeedForward."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, hidden)

    def forward(self, x):
        return x + self.ff(self.norm(x))
'''

_GATED = '''
class GatedBlock(nn.Module):
    """A sigmoid gate times a ResidualBlock: three levels of nesting."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.gate = nn.Linear(dim, dim)
        self.body = ResidualBlock(dim, hidden)

    def forward(self, x):
        return torch.sigmoid(self.gate(x)) * self.body(x)
'''

_CONV_BLOCK = '''
class ConvBlock(nn.Module):
    """3x3 conv -> batch norm -> relu, plus the input."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x))) + x
'''

#: block name -> (helper classes it needs, in definition order; fx nodes it traces to)
_BLOCKS: dict[str, tuple[tuple[str, ...], int]] = {
    "FeedForward": (("FeedForward",), 3),
    "ResidualBlock": (("FeedForward", "ResidualBlock"), 5),
    "GatedBlock": (("FeedForward", "ResidualBlock", "GatedBlock"), 8),
}
_SOURCES = {"FeedForward": _FEED_FORWARD, "ResidualBlock": _RESIDUAL, "GatedBlock": _GATED, "ConvBlock": _CONV_BLOCK}


def _lin(fan_in: int, b: float) -> float:
    return math.sqrt(fan_in) * b + 1.0


class Block(OpKind):
    """A hand-written nested block over the last dimension; an existing block of the same
    class and width is called again about half the time."""

    name = "block"
    category = "nested"
    cost = 8

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_or_new(g, lambda v: len(v.shape) >= 1 and numel(v.shape) <= 512, (g.int(1, 3), g.int(1, MAX_DIM)))
        d = x.shape[-1]
        cls = g.pick(tuple(_BLOCKS))
        reuse = p.find_module(g, cls, {"dim": d}, match=("dim",))
        if reuse is not None:
            attrs = {"attr": reuse["attr"], "new": False, "cls": cls, **reuse["sig"]}
        else:
            attrs = {"attr": p.fresh("blk"), "new": True, "cls": cls, "dim": d, "hidden": g.int(1, 2 * MAX_DIM)}
            p.register_module(attrs["attr"], cls, {"dim": d, "hidden": attrs["hidden"]})
        h = attrs["hidden"]
        ff = _lin(h, _lin(d, math.sqrt(d) + 1.0))  # LayerNorm output is at most sqrt(d)
        bound = {"FeedForward": _lin(h, _lin(d, x.bound)), "ResidualBlock": x.bound + ff, "GatedBlock": x.bound + ff}[cls]
        if bound > FLOAT_LIMIT or numel(x.shape[:-1]) * max(h, d) > MAX_ELEMENTS:
            return None
        return p.add(self.name, [x], attrs, x.shape, x.dtype, bound, cost=_BLOCKS[cls][1])

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        for helper in _BLOCKS[a["cls"]][0]:
            w.helper(helper, _SOURCES[helper])
        if a["new"]:
            w.member(f"self.{a['attr']} = {a['cls']}({a['dim']}, {a['hidden']})")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"attr": Name("blk"), "new": Bool(), "cls": OneOf(_BLOCKS), "dim": size(), "hidden": size()}

    def state(self, node: dict[str, Any]) -> int:
        a = node["attrs"]
        d, h = a["dim"], a["hidden"]
        # feed-forward, its norm, and the gate: an upper bound whatever the class
        return (2 * d * h + d + h) + 2 * d + (d * d + d) if a["new"] else 0


class ConvBlockKind(OpKind):
    """A residual conv block (conv, batch norm, relu) on a 4-d input."""

    name = "conv_block"
    category = "nested"
    cost = 5

    def plan(self, p: Planner, g: Gene) -> Value | None:
        def ok(v: Value) -> bool:
            return len(v.shape) == 4 and numel(v.shape) <= 512 and (not p.training or numel(v.shape) > v.shape[1])

        x = p.float_or_new(g, ok, (2, g.int(1, 4), g.int(1, 5), g.int(1, 5)))
        c = x.shape[1]
        reuse = p.find_module(g, "ConvBlock", {"c": c}, match=("c",))
        attr = reuse["attr"] if reuse else p.fresh("cblk")
        if reuse is None:
            p.register_module(attr, "ConvBlock", {"c": c})
        n = numel(x.shape) // c
        bound = max(_lin(9 * c, x.bound), math.sqrt(n)) * 1.5 + x.bound
        if bound > FLOAT_LIMIT:
            return None
        return p.add(self.name, [x], {"attr": attr, "new": reuse is None, "c": c}, x.shape, x.dtype, bound, cost=self.cost)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.helper("ConvBlock", _CONV_BLOCK)
        if a["new"]:
            w.member(f"self.{a['attr']} = ConvBlock({a['c']})")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"attr": Name("cblk"), "new": Bool(), "c": size()}

    def state(self, node: dict[str, Any]) -> int:
        c = node["attrs"]["c"]
        return 9 * c * c + 5 * c if node["attrs"]["new"] else 0


class Sequential(OpKind):
    """``nn.Sequential(Linear, activation, Linear)``."""

    name = "sequential"
    category = "nested"
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_or_new(g, lambda v: len(v.shape) >= 1, (g.int(1, 3), g.int(1, MAX_DIM)))
        k = x.shape[-1]
        h, m = g.int(1, MAX_DIM), g.int(1, MAX_DIM)
        act = g.pick(self.ACTS)
        shape = (*x.shape[:-1], m)
        bound = _lin(h, _lin(k, x.bound))
        if bound > FLOAT_LIMIT or numel(x.shape[:-1]) * max(h, m) > MAX_ELEMENTS:
            return None
        attrs = {"attr": p.fresh("seq"), "in": k, "hidden": h, "out": m, "act": act}
        return p.add(self.name, [x], attrs, shape, x.dtype, bound, cost=self.cost)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.member(f"self.{a['attr']} = nn.Sequential(nn.Linear({a['in']}, {a['hidden']}), {a['act']}, nn.Linear({a['hidden']}, {a['out']}))")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    ACTS = ("nn.ReLU()", "nn.Tanh()", "nn.GELU()")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"attr": Name("seq"), "in": size(), "hidden": size(), "out": size(), "act": OneOf(self.ACTS)}

    def state(self, node: dict[str, Any]) -> int:
        a = node["attrs"]
        return (a["in"] + 1) * a["hidden"] + (a["hidden"] + 1) * a["out"]


class Fusable(OpKind):
    """``bn(conv(x))`` or ``bn(linear(x))``, optionally followed by relu: the chains that
    conv/linear + batch-norm fusion rewrites."""

    name = "fusable"
    category = "nested"
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        nd = g.int(0, 3)  # 0: linear + BatchNorm1d, else conv{nd}d + BatchNorm{nd}d
        rank = 2 if nd == 0 else nd + 2

        def ok(v: Value) -> bool:
            return len(v.shape) == rank and numel(v.shape) <= 512 and (not p.training or numel(v.shape) > v.shape[1])

        default = (2, g.int(1, 4)) if nd == 0 else (2, g.int(1, 3), *[g.int(2, 4) for _ in range(nd)])
        x = p.float_or_new(g, ok, default)
        cin, cout = x.shape[1], g.int(1, MAX_DIM)
        if nd == 0:
            shape: tuple[int, ...] = (x.shape[0], cout)
            fan_in = cin
        else:
            k = g.int(1, min(3, min(x.shape[2:])))
            shape = (x.shape[0], cout, *[s - k + 1 for s in x.shape[2:]])
            fan_in = cin * k**nd
        if numel(shape) > MAX_ELEMENTS or (p.training and numel(shape) <= cout):
            return None
        n = numel(shape) // cout
        # running stats keep their defaults (mean 0, var 1) so eval mode is the identity
        bound = max(_lin(fan_in, x.bound), math.sqrt(n) + 1.0)
        if bound > FLOAT_LIMIT:
            return None
        attrs = {"nd": nd, "cin": cin, "cout": cout, "k": 0 if nd == 0 else k, "relu": g.chance(50), "attr": p.fresh("fz")}
        return p.add(self.name, [x], attrs, shape, x.dtype, bound, cost=self.cost)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        attr = a["attr"]
        if a["nd"] == 0:
            w.member(f"self.{attr}_linear = nn.Linear({a['cin']}, {a['cout']})")
            w.member(f"self.{attr}_bn = nn.BatchNorm1d({a['cout']})")
            inner = f"self.{attr}_bn(self.{attr}_linear({node['in'][0]}))"
        else:
            w.member(f"self.{attr}_conv = nn.Conv{a['nd']}d({a['cin']}, {a['cout']}, {a['k']})")
            w.member(f"self.{attr}_bn = nn.BatchNorm{a['nd']}d({a['cout']})")
            inner = f"self.{attr}_bn(self.{attr}_conv({node['in'][0]}))"
        w.assign(node, f"F.relu({inner})" if a["relu"] else inner)

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"nd": Int(0, 3), "cin": size(), "cout": size(), "k": Int(0, 16), "relu": Bool(), "attr": Name("fz")}

    def state(self, node: dict[str, Any]) -> int:
        a = node["attrs"]
        return a["cout"] * (a["cin"] * max(1, a["k"]) ** a["nd"] + 1) + 5 * a["cout"]


KINDS: tuple[OpKind, ...] = (Block(), ConvBlockKind(), Sequential(), Fusable())
