"""Parameters for the optimization family: ``fuse``'s ``inplace`` flag, the
``optimize_for_inference`` pass switches, and the symbolic expressions the ``validator`` row
translates to z3.

Everything is JSON-able. The MKLDNN heuristic is named (``"length"``: upstream's default
``use_mkl_length``, ``"always"``, ``"never"``, ``"off"``: no layout pass); the driver turns
the name into the callable. An expression is a small tree::

    ["sym", i]            the i-th dimension of the case's tensor inputs (modulo their count)
    ["int", n]            an integer literal
    [op, left, right]     op in EXPRESSION_OPS

which the driver builds with torch's SymPy functions (``floordiv`` is ``FloorDiv``,
``trunc_div`` is ``TruncToInt(IntTrueDiv(..))``, ``band`` is the bitwise and, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

#: Heuristic names the optimize_for_inference driver understands (``"autotune"`` too, which
#: times regions and is therefore not drawn: its decisions are not reproducible).
MKLDNN_CHOICES = ("off", "length", "always", "never")

#: Binary operations of validator expressions.
EXPRESSION_OPS = (
    "add",
    "sub",
    "mul",
    "floordiv",
    "mod",
    "pymod",
    "pow",
    "max",
    "min",
    "trunc_div",
    "round_div",
    "ceil_div",
    "floor_div",
    "clean_div",
    "band",
    "bor",
)


def fuse_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"inplace": bool}``."""
    return st.fixed_dictionaries({"inplace": st.booleans()})


def optimize_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"conv_bn_fuse": bool, "remove_dropout": bool, "mkldnn": name}``."""
    return st.fixed_dictionaries(
        {
            "conv_bn_fuse": st.booleans(),
            "remove_dropout": st.booleans(),
            "mkldnn": st.sampled_from(MKLDNN_CHOICES),
        }
    )


def _leaves() -> st.SearchStrategy[list[Any]]:
    return st.one_of(
        st.tuples(st.just("sym"), st.integers(0, 7)).map(list),
        st.tuples(st.just("int"), st.integers(-9, 9)).map(list),
    )


def expressions(*, max_leaves: int = 6) -> st.SearchStrategy[list[Any]]:
    """Expression trees (see the module docstring) with at most ``max_leaves`` leaves."""
    return st.recursive(
        _leaves(),
        lambda inner: st.tuples(st.sampled_from(EXPRESSION_OPS), inner, inner).map(list),
        max_leaves=max_leaves,
    )


def validator_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"expr": tree}``: an integer-valued expression over the case's input sizes."""
    return st.fixed_dictionaries({"expr": expressions()})
