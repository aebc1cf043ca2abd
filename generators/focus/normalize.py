"""Patterns and foci of the normalization and tracing family.

The foci of ``normalize_args``, ``normalize_args_typed``, ``normalize_operators``,
``annotate_types`` and ``meta_trace`` are at the end of this module; their patterns live in
:mod:`generators.focus.normalize_args` and :mod:`generators.focus.meta_trace` and join
:data:`KINDS` here. The patterns of the ``rewrite`` row (``RewritingTracer``) are the forward
constructs upstream's rewriter recompiles or never reaches
(``torch/fx/experimental/rewriter.py``):

* ``checked_child``: a child module whose forward has an ``assert``, on a traced value (the
  child is then a leaf for plain tracing, which cannot follow it) or on its own state;
* ``private_attribute``, ``annotated_local``, ``super_call``: the root's forward reads a
  class-private attribute (``self.__s``), has an annotated assignment or a bare annotation,
  or calls ``super()`` with or without arguments: upstream fails on the first one it meets,
  so each is a pattern of its own and swarm subsets draw them apart.
"""

from __future__ import annotations

from typing import Any

from generators.focus import meta_trace as _meta_trace
from generators.focus import normalize_args as _normalize_args
from generators.focus._plant import Pattern
from generators.focus.focus import Focus
from generators.vocab.base import FLOAT_LIMIT, Gene, OpKind, Planner, Value, Writer
from generators.vocab.schema import Int, Name, OneOf

_CHILDREN = {
    "CheckedChild": '''
class CheckedChild(nn.Module):
    """Doubles its input after checking its rank: an assert on a traced value, so plain
    tracing keeps the child as a leaf (``fx_conform_leaf``)."""

    fx_conform_leaf = True

    def forward(self, x):
        assert x.dim() >= 1, "the child expects a tensor with dimensions"
        return x * 2.0
''',
    "StateCheckedChild": '''
class StateCheckedChild(nn.Module):
    """Scales its input after checking its own state (an assert tracing evaluates once)."""

    def __init__(self):
        super().__init__()
        self.scale = 2.0

    def forward(self, x):
        assert self.scale > 0, "the scale must be positive"
        return x * self.scale
''',
}


class CheckedChildKind(Pattern):
    """A child module with an ``assert`` in its forward, called on a value."""

    name = "checked_child"
    in_specs = True  # its nodes are its own
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: bool(v.shape) and v.bound <= FLOAT_LIMIT / 2)
        if x is None:
            x = p.new_input((g.int(1, 3), g.int(1, 4)))
        cls = g.pick(("CheckedChild", "CheckedChild", "StateCheckedChild"))
        return p.add(self.name, [x], {"cls": cls, "attr": p.fresh("child")}, x.shape, x.dtype, 2.0 * x.bound)

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        a = node["attrs"]
        w.helper(a["cls"], _CHILDREN[a["cls"]])
        w.member(f"self.{a['attr']} = {a['cls']}()")
        w.assign(node, f"self.{a['attr']}({node['in'][0]})")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"cls": OneOf(tuple(_CHILDREN)), "attr": Name("child")}


#: Root-forward constructs (styles of the ``forward_construct`` kind): 0 private attribute,
#: 1 annotated assignment, 2 bare annotation, 3 super(Class, self), 4 zero-argument super().
FORWARD_STYLES = 5


class ForwardConstruct(OpKind):
    """``v = x * <something>`` written with a construct of :data:`FORWARD_STYLES` in the
    root's forward. Planted by the patterns below, never drawn alone."""

    name = "forward_construct"
    category = "control"
    weight = 0.0

    def plan(self, p: Planner, g: Gene) -> Value | None:
        return None

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        from generators.spec import CLASS_NAME

        x, v, style = node["in"][0], node["id"], node["attrs"]["style"]
        w.class_bound = w.class_bound or style in (0, 4)
        if style == 0:
            w.member(f"self.__{v}_scale = 2.0")
            w.assign(node, f"{x} * self.__{v}_scale")
        elif style == 1:
            w.line(f"{v}: torch.Tensor = {x} * 2.0")
        elif style == 2:
            w.line(f"{v}: torch.Tensor")
            w.assign(node, f"{x} + 1.0")
        else:
            call = f"super({CLASS_NAME}, self)" if style == 3 else "super()"
            w.assign(node, f"{x} * (0.5 if {call}.__getattribute__('training') else 2.0)")

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"style": Int(0, FORWARD_STYLES - 1)}


class _Construct(Pattern):
    """Plants one ``forward_construct`` node of one of ``styles``."""

    styles: tuple[int, ...] = ()
    cost = 2

    def plan(self, p: Planner, g: Gene) -> Value | None:
        x = p.float_value(g, lambda v: v.bound <= FLOAT_LIMIT / 2)
        if x is None:
            x = p.new_input((g.int(1, 3), g.int(1, 4)))
        style = g.pick(self.styles)
        return p.add("forward_construct", [x], {"style": style}, x.shape, x.dtype, 2.0 * x.bound + 1.0)


class PrivateAttribute(_Construct):
    """``x * self.__scale``: a class-private (name-mangled) attribute."""

    name = "private_attribute"
    styles = (0,)


class AnnotatedLocal(_Construct):
    """``y: torch.Tensor = x * 2.0``, or a bare ``y: torch.Tensor`` before the assignment."""

    name = "annotated_local"
    styles = (1, 2)


class SuperCall(_Construct):
    """``super(GeneratedModule, self)`` or zero-argument ``super()`` in the forward."""

    name = "super_call"
    styles = (3, 4)


KINDS: tuple[OpKind, ...] = (
    CheckedChildKind(), ForwardConstruct(), PrivateAttribute(), AnnotatedLocal(), SuperCall(),
    *_normalize_args.KINDS, *_meta_trace.KINDS,
)

REWRITE = Focus(
    weights={"assert": 2.0, "relu": 1.0, "add": 1.0, "linear": 1.0, "block": 0.5, "constant": 0.3, "default_arg": 0.5},
    # enclosing_read and global_forward are generators.focus.rewrite's
    patterns={"checked_child": 3.0, "private_attribute": 2.0, "annotated_local": 2.0, "super_call": 2.0,
              "enclosing_read": 2.0, "global_forward": 2.0},
    max_nodes=30,
    training=None,
)

# The argument-normalizing rows: calls of every shape ``normalize_function`` matches against
# (torch functions with overloads, functionals, aten overloads, torch.nn modules and other
# leaves, which normalize_module leaves alone), and the patterns of
# :mod:`generators.focus.normalize_args`. Without recorded types only single-schema callables
# (aten overloads, functionals, modules) are normalized; with them overloads are resolved from
# the arguments' types, so the typed row weighs the patterns that vary those types.
_CALLS = {"add": 0.5, "mul": 0.3, "div": 0.3, "pow": 0.2, "remainder": 0.2, "maximum": 0.2, "gt": 0.2,
          "sum": 0.2, "amax": 0.2, "softmax": 0.2, "matmul": 0.2, "linear_fn": 0.2, "linear": 0.3,
          "conv2d_fn": 0.3, "batch_norm": 0.2, "layer_norm": 0.2, "activation": 0.3, "max_pool": 0.2,
          "clamp": 0.2, "where": 0.2, "split": 0.2, "cat": 0.2}

NORMALIZE_ARGS = Focus(
    weights=_CALLS,
    patterns={"aten_overload_call": 4.0, "nonzero_call": 2.0, "scalar_self_call": 1.0, "keyword_operand": 1.0,
              "tuple_result": 1.0, "keyword_sequence": 1.0, "keyword_operator": 0.5, "checked_child": 1.0},
    max_nodes=30,
)

NORMALIZE_ARGS_TYPED = Focus(
    weights=_CALLS,
    patterns={"scalar_self_call": 3.0, "nonzero_call": 2.0, "keyword_operand": 2.0, "tuple_result": 2.0,
              "keyword_sequence": 2.0, "aten_overload_call": 1.0, "keyword_operator": 0.5, "checked_child": 1.0},
    max_nodes=30,
)

NORMALIZE_OPERATORS = Focus(
    weights={"add": 1.0, "sub": 1.0, "mul": 0.5, "div": 1.0, "remainder": 0.3, "compare": 0.2, "relu": 0.5,
             "linear": 0.3, "layer_norm": 0.3, "max_pool": 0.3},
    patterns={"keyword_operator": 4.0, "keyword_operand": 1.0, "scalar_self_call": 0.5, "aten_overload_call": 0.5},
    max_nodes=30,
)

# AnnotateTypesWithSchema annotates torch.nn.functional calls (boolean-dispatched ones such as
# F.max_pool2d apart; builtins such as F.conv2d have no signature to read), torch.nn module
# calls (not other leaves: a checked child) and get_attr nodes (parameters read in forward).
ANNOTATE_TYPES = Focus(
    weights={"activation": 1.0, "layers": 1.0, "conv2d_fn": 1.0, "normalization": 1.0, "pooling": 1.0,
             "max_pool": 2.0, "lookup": 0.5, "dropout": 0.3, "linear_fn": 0.5, "add": 0.5, "relu": 0.5},
    patterns={"checked_child": 1.0, "tuple_result": 0.5, "keyword_sequence": 0.5, "nonzero_call": 0.3},
    max_nodes=30,
    training=None,
)

META_TRACE = Focus(
    weights={"linear": 1.0, "layer_norm": 0.5, "embedding": 0.5, "relu": 1.0, "abs": 0.5, "where": 0.5,
             "reshape": 0.5, "add": 0.5, "conv1d": 0.3, "conv2d": 0.3, "batch_norm": 0.3},
    patterns={"size_of_dim_zero": 3.0, "shape_gate": 3.0, "meta_construct": 2.0},
    max_nodes=30,
)
