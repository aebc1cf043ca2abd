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


#: Relative weight of each operation in drawn trees: the truncating and bitwise functions,
#: whose z3 translations are the least like Python's (int(x) truncates where z3's ToInt
#: floors; bitwise results come back through 64-bit vectors), come three and two times as
#: often as the rest.
OP_WEIGHTS = {op: 1 for op in EXPRESSION_OPS} | {"trunc_div": 3, "band": 2, "bor": 2}

#: Operations that round a quotient (``TruncToInt``/``RoundToInt``/``CeilToInt``/
#: ``FloorToInt`` of ``IntTrueDiv``): they differ only on negative, non-whole quotients.
ROUNDING_OPS = ("trunc_div", "round_div", "ceil_div", "floor_div")
BITWISE_OPS = ("band", "bor")


def _weighted_ops() -> st.SearchStrategy[str]:
    # repeated in proportion to the weights; "add" first, where hypothesis shrinks to
    return st.sampled_from(tuple(op for op, weight in OP_WEIGHTS.items() for _ in range(weight)))


def _leaves() -> st.SearchStrategy[list[Any]]:
    return st.one_of(
        st.tuples(st.just("sym"), st.integers(0, 7)).map(list),
        st.tuples(st.just("int"), st.integers(-9, 9)).map(list),
    )


def _below_zero() -> st.SearchStrategy[list[Any]]:
    """``sym - k`` with ``k`` from 7 to 16: negative at the sizes random modules have (1 to
    6), and at most sizes of other sources."""
    return st.tuples(st.integers(0, 7), st.integers(7, 16)).map(lambda sk: ["sub", ["sym", sk[0]], ["int", sk[1]]])


def negative_quotients() -> st.SearchStrategy[list[Any]]:
    """A rounded quotient (:data:`ROUNDING_OPS`) of ``sym - k`` by a positive literal: the
    quotient is negative and not whole at most sizes (random trees cover other signs)."""
    divisors = st.sampled_from((3, 4, 7, 2, 5))
    # truncation twice as often: it is the one upstream translates as flooring
    ops = st.sampled_from(("trunc_div", *ROUNDING_OPS))
    return st.tuples(ops, _below_zero(), divisors).map(
        lambda t: [t[0], t[1], ["int", t[2]]])


def negative_bitwise() -> st.SearchStrategy[list[Any]]:
    """A bitwise and/or with a negative result: ``x | n`` with ``n < 0``, or ``x & y`` of two
    values below zero (``x``: a size, or a size minus a literal)."""
    operand = st.one_of(st.tuples(st.just("sym"), st.integers(0, 7)).map(list), _below_zero())
    negative = st.integers(-9, -1).map(lambda n: ["int", n])
    return st.one_of(
        st.tuples(operand, negative).map(lambda t: ["bor", t[0], t[1]]),
        st.tuples(_below_zero(), st.one_of(negative, _below_zero())).map(lambda t: ["band", t[0], t[1]]),
    )


def negative_remainders() -> st.SearchStrategy[list[Any]]:
    """Python's remainder (``PythonMod``) of a size, or a size minus a literal, by a negative
    literal: where Python's ``%`` takes the divisor's sign and z3's Euclidean ``mod`` does not."""
    operand = st.one_of(st.tuples(st.just("sym"), st.integers(0, 7)).map(list), _below_zero())
    return st.tuples(operand, st.integers(-7, -2)).map(lambda t: ["pymod", t[0], ["int", t[1]]])


def expressions(*, max_leaves: int = 6, corners: bool = False) -> st.SearchStrategy[list[Any]]:
    """Expression trees (see the module docstring) with at most ``max_leaves`` leaves.

    Args:
        max_leaves: bound on the leaves of a random tree.
        corners: also use :func:`negative_quotients`, :func:`negative_bitwise` and
            :func:`negative_remainders` as leaves
            (each a subtree), so the constructs where translations go wrong sit inside
            larger trees too.
    """
    leaves = _leaves()
    if corners:
        leaves = st.one_of(leaves, leaves, leaves, negative_quotients(), negative_bitwise(), negative_remainders())
    return st.recursive(
        leaves,
        lambda inner: st.tuples(_weighted_ops(), inner, inner).map(list),
        max_leaves=max_leaves,
    )


#: How validator expressions are drawn, each as often: a random tree (the simplest draw), a
#: corner construct alone, or one operation whose operands may be corner constructs.
EXPRESSION_SHAPES = ("tree", "quotient", "bitwise", "remainder", "mixed")


def validator_expressions() -> st.SearchStrategy[list[Any]]:
    """Trees :func:`validator_params` draws, by :data:`EXPRESSION_SHAPES`."""
    return st.sampled_from(EXPRESSION_SHAPES).flatmap(lambda shape: {
        "tree": expressions,
        "quotient": negative_quotients,
        "bitwise": negative_bitwise,
        "remainder": negative_remainders,
        # one operation over corner constructs: deeper nests of rounded quotients take
        # upstream's z3 translation past the time limit (RoundToInt of RoundToInt of ...)
        "mixed": lambda: expressions(max_leaves=2, corners=True),
    }[shape]())


def validator_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """``{"expr": tree}``: an integer-valued expression over the case's input sizes, one
    time in five a random tree, otherwise built around a negative rounded quotient, a
    negative bitwise result or a remainder by a negative divisor (:data:`EXPRESSION_SHAPES`)."""
    return st.fixed_dictionaries({"expr": validator_expressions()})
