"""Patterns of the ``rewrite`` row that change how the root's ``forward`` is defined, which is
what upstream's ``RewritingTracer`` recompiles (``torch/fx/experimental/rewriter.py`` turns
the root's forward into source and compiles it again at module level):

* ``enclosing_read``: the module class is made inside a function and the forward reads one of
  that function's variables (a closure cell);
* ``global_forward``: the forward is a module-level function the class takes as its
  ``forward``, so its name is already a global of its module.

The ``rewrite`` row's focus (``generators.focus.normalize.REWRITE``) draws them. Both write
their node as ``v = x * <factor>``; the construct is the Writer's
(:attr:`~generators.vocab.base.Writer.free`, :attr:`~generators.vocab.base.Writer.forward_global`),
and :func:`generators.spec.module_source` renders it. A spec holding both gets the closure
(a forward made inside a function is not a global of its module); a forward that needs its
class (a name-mangled attribute, zero-argument ``super()``) stays a method.
"""

from __future__ import annotations

from typing import Any

from generators.focus._plant import Pattern
from generators.vocab.base import FLOAT_LIMIT, Gene, Planner, Value, Writer, fmt_float
from generators.vocab.schema import Float


class _ScaledForward(Pattern):
    in_specs = True  # its nodes are its own
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: v.bound <= FLOAT_LIMIT / 2)
        if x is None:
            x = p.new_input((g.int(1, 3), g.int(1, 4)))
        factor = g.pick((0.5, 2.0, -1.5))
        return p.add(self.name, [x], {"factor": factor}, x.shape, x.dtype, abs(factor) * x.bound)

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"factor": Float()}


class EnclosingRead(_ScaledForward):
    """``v = x * v_factor`` where ``v_factor`` is a variable of the function that makes the class."""

    name = "enclosing_read"

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        free = f"{node['id']}_factor"
        w.free[free] = fmt_float(node["attrs"]["factor"])
        w.assign(node, f"{node['in'][0]} * {free}")


class GlobalForward(_ScaledForward):
    """``v = x * factor`` in a forward written as a module-level function."""

    name = "global_forward"

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        w.forward_global = True
        w.assign(node, f"{node['in'][0]} * {fmt_float(node['attrs']['factor'])}")


KINDS = (EnclosingRead(), GlobalForward())
