"""Patterns of the ``meta_trace`` row (``MetaTracer`` with every input as a meta tensor):
the constructs ``torch/fx/experimental/meta_tracer.py`` branches on.

* ``size_of_dim_zero``: ``x.reshape(x.size(0), -1)``, ``x.size(dim=0)``, ``x * x.size(0)``
  (``MetaProxy.size`` tests ``if dim``);
* ``shape_gate``: a layer (a stateful ``nn.Linear``, ``nn.Conv{1,2}d``, ``nn.BatchNorm1d``,
  or none) followed by a child whose forward branches on its input's shape, rank or sizes.
  The child is a leaf for plain tracing (``fx_conform_leaf``), which cannot follow the
  branch; the meta tracer follows it on the metadata of the layer's output. One variant
  calls a stateless ``nn.ReLU()`` created in the forward (the tracer installs it);
* ``meta_construct``: the calls the tracer overrides (``torch.where``, ``torch.abs``,
  ``torch.relu``, ``F.relu``), patches (``torch.full_like``, with a ``device`` or not) or
  answers from metadata (``.dtype``, ``.device``, ``.dim()``, ``.shape``), and an attribute
  used as a value (``x.real``, whose node the tracer adds lazily).
"""

from __future__ import annotations

from typing import Any

from generators.focus import _plant
from generators.focus._plant import Pattern
from generators.vocab.base import FLOAT_LIMIT, MAX_DIM, Gene, OpKind, Planner, Value, Writer, numel
from generators.vocab.schema import Bool, Int, Name


def _float(p: Planner, g: Gene, pred: Any = None, default: tuple[int, ...] | None = None) -> Value:
    x = p.float_value(g, lambda v: v.bound <= FLOAT_LIMIT / 8 and (pred is None or pred(v)))
    return x if x is not None else p.new_input(default or (g.int(1, 3), g.int(1, 4)))


class SizeOfDimZero(Pattern):
    """``x.size(0)`` (or ``x.size(dim=0)``) used as a size or as a number."""

    name = "size_of_dim_zero"
    in_specs = True
    cost = 2
    STYLES = (
        "{0}.reshape({0}.size(0), -1)",
        "{0}.view({0}.size(0), -1)",
        "{0}.reshape({0}.size(dim=0), -1)",
        "{0} * {0}.size(0)",
    )

    def plan(self, p: Planner, g: Gene) -> Value | None:
        style = g.int(0, len(self.STYLES) - 1)
        if style == 3:
            x = _float(p, g, lambda v: bool(v.shape))
            bound = x.bound * x.shape[0]
            if bound > FLOAT_LIMIT:
                return None
            return p.add(self.name, [x], {"style": style}, x.shape, x.dtype, bound)
        x = _float(p, g, lambda v: len(v.shape) >= 2 and (style != 1 or v.contiguous),
                   (g.int(1, 3), g.int(1, 3), g.int(1, 4)))
        shape = (x.shape[0], numel(x.shape[1:]))
        view = x if style == 1 else None
        return p.add(self.name, [x], {"style": style}, shape, x.dtype, x.bound, view_of=view)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, self.STYLES[node["attrs"]["style"]].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, len(self.STYLES) - 1)}


#: Tests of :class:`ShapeGate` on its input ``h`` against ``self.value``.
GATE_TESTS = (
    "h.shape[-1] == self.value",
    "h.dim() == self.value",
    "h.size(-1) > self.value",
    "h.size(0) == self.value",
)


def _gate_class(test: int, fresh: bool) -> tuple[str, str]:
    name = f"ShapeGate{test}{'Fresh' if fresh else ''}"
    relu = "nn.ReLU()(h)" if fresh else "torch.relu(h)"
    source = f'''
class {name}(nn.Module):
    """Applies relu when its input passes a shape test: control flow on a shape, so plain
    tracing keeps the gate as a leaf (``fx_conform_leaf``)."""

    fx_conform_leaf = True

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, h):
        if {GATE_TESTS[test]}:
            return {relu}
        return h
'''
    return name, source


class ShapeGate(Pattern):
    """A layer (stateful or none) followed by a child that branches on its output's shape."""

    name = "shape_gate"
    in_specs = True
    cost = 3

    def plan(self, p: Planner, g: Gene) -> Value | None:
        layer = g.int(0, 4)  # 0 Linear, 1 Conv1d, 2 Conv2d, 3 BatchNorm1d, 4 none
        h: Value | None
        if layer in (1, 2):
            x = _float(p, g, lambda v: len(v.shape) == layer + 2 and min(v.shape[2:]) >= 2,
                       (g.int(1, 2), g.int(1, 3), *[g.int(3, 5) for _ in range(layer)]))
            h = _plant.conv(p, x, cout=g.int(1, 4), k=g.int(1, 2))
        elif layer == 3:
            x = _float(p, g, lambda v: len(v.shape) == 2 and v.shape[0] >= 2, (g.int(2, 4), g.int(1, 4)))
            h = _plant.batch_norm(p, x)
        else:
            x = _float(p, g, lambda v: bool(v.shape))
            h = _plant.linear(p, x, out=g.int(1, MAX_DIM)) if layer == 0 else x
        if h is None:
            return None
        test = g.int(0, len(GATE_TESTS) - 1)
        value = {0: h.shape[-1], 1: len(h.shape), 2: 1, 3: h.shape[0]}[test]
        if g.chance(30):
            value += 1  # the other branch
        attrs = {"test": test, "value": value, "fresh": g.chance(25), "attr": p.fresh("gate")}
        return p.add(self.name, [h], attrs, h.shape, h.dtype, h.bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        cls, source = _gate_class(a["test"], a["fresh"])
        w.helper(cls, source)
        w.member(f"self.{a['attr']} = {cls}({a['value']})")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"test": Int(0, len(GATE_TESTS) - 1), "value": Int(0, 64), "fresh": Bool(), "attr": Name("gate")}


class MetaConstruct(Pattern):
    """A call or attribute the meta tracer overrides, patches or answers from metadata."""

    name = "meta_construct"
    in_specs = True
    cost = 2
    #: (template, bound of the result from the operand's bound and rank)
    STYLES: tuple[tuple[str, Any], ...] = (
        ("torch.where({0} > 0, {0}, {0} * 0.5)", lambda b, r: b),
        ("torch.abs({0})", lambda b, r: b),
        ("torch.relu({0})", lambda b, r: b),
        ("F.relu({0})", lambda b, r: b),
        ("{0} + torch.full_like({0}, 0.5)", lambda b, r: b + 0.5),
        ("{0}.to({0}.dtype)", lambda b, r: b),
        ("{0} * {0}.dim()", lambda b, r: b * max(r, 1)),
        ("{0}.reshape({0}.shape)", lambda b, r: b),
        ("{0}.to({0}.device) * 2.0", lambda b, r: 2.0 * b),
        ("{0}.real * 2.0", lambda b, r: 2.0 * b),
        ("{0} - torch.full_like({0}, 0.5, device={0}.device)", lambda b, r: b + 0.5),
    )

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = _float(p, g)
        style = g.int(0, len(self.STYLES) - 1)
        bound = self.STYLES[style][1](x.bound, len(x.shape))
        if bound > FLOAT_LIMIT:
            return None
        return p.add(self.name, [x], {"style": style}, x.shape, x.dtype, bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.assign(node, self.STYLES[node["attrs"]["style"]][0].format(*node["in"]))

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, len(self.STYLES) - 1)}


KINDS: tuple[OpKind, ...] = (SizeOfDimZero(), ShapeGate(), MetaConstruct())
