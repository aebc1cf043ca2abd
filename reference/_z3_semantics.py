"""SymPy and Python arithmetic as z3 terms, for :mod:`reference.validator`.

The translation rules live here so the validator module stays about validation: the
rendering of terms (:func:`z3str`), Python's rounding and remainder rules over z3 integers
and reals (:class:`_PythonSemantics`) and the SymPy walker (:class:`SympyToZ3`). The public
names are re-exported by :mod:`reference.validator`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sympy
import torch
import z3
from sympy.logic.boolalg import BooleanAtom
from torch.utils._sympy import functions as tfn

if TYPE_CHECKING:
    from reference.validator import TranslationValidator

# Kinds whose z3 spelling z3str rewrites when they appear under a negation.
_NEGATED = {z3.Z3_OP_EQ: "!=", z3.Z3_OP_LE: ">", z3.Z3_OP_GE: "<"}


def z3str(e: z3.ExprRef) -> str:
    """A compact prefix rendering of a (simplified) z3 expression.

    Conversions between Int and Real are dropped (``ToInt`` of a division prints as
    ``idiv``), chains of ``+``/``*`` are flattened and negated comparisons print as
    ``!=``, ``>``, ``<``.

    Args:
        e: a z3 expression.

    Returns:
        The rendering, e.g. ``(>= (+ s0 s1) 4)``.
    """
    if not z3.is_expr(e):
        raise AssertionError(f"unsupported expression type: {e}")
    # Rewriting rules only: cheap, and it puts comparisons and sums in a canonical form.
    simplified = z3.simplify(e)
    if z3.is_int_value(simplified) or z3.is_rational_value(simplified):
        return simplified.as_string()  # type: ignore[attr-defined]
    if not z3.is_app(simplified):  # a quantifier or a bound variable
        raise ValueError(f"can't print Z3 expression: {simplified}")
    e = simplified
    decl = e.decl()
    kind = decl.kind()
    children = [e.arg(i) for i in range(e.num_args())]
    op = str(decl)
    if kind == z3.Z3_OP_POWER:
        op = "pow"
    elif kind in (z3.Z3_OP_ADD, z3.Z3_OP_MUL):
        flat: list[z3.ExprRef] = []
        pending = list(reversed(children))
        while pending:
            child = pending.pop()
            if z3.is_app(child) and child.decl().kind() == kind:
                pending.extend(reversed([child.arg(i) for i in range(child.num_args())]))
            else:
                flat.append(child)
        children = flat
    elif kind == z3.Z3_OP_NOT:
        if len(children) != 1:
            raise AssertionError(f"Expected 1 arg, got {len(children)}")
        inner = children[0]
        if not z3.is_app(inner):
            raise AssertionError("Expected z3 app")
        if inner.decl().kind() in _NEGATED:
            op = _NEGATED[inner.decl().kind()]
            children = [inner.arg(i) for i in range(inner.num_args())]
    elif kind in (z3.Z3_OP_TO_INT, z3.Z3_OP_TO_REAL):
        if len(children) != 1:
            raise AssertionError(f"Expected 1 arg, got {len(children)}")
        text = z3str(children[0])
        return "(idiv" + text[2:] if text.startswith("(/") else text
    elif kind == z3.Z3_OP_UNINTERPRETED:
        if children:
            raise AssertionError(f"Expected 0 args, got {len(children)}")
        return str(decl)
    rendered = " ".join([op, *(z3str(child) for child in children)])
    return f"({rendered.rstrip()})"


def _bitwise(
    on_ints: Callable[[Any, Any], Any], on_bools: Callable[..., Any] | None
) -> Callable[..., Any]:
    """A bitwise operation on z3 integers, through 64-bit vectors read back as signed."""

    def apply(self: _PythonSemantics, *operands: z3.ExprRef) -> z3.ExprRef:
        if on_bools is not None and all(isinstance(x, z3.BoolRef) for x in operands):
            return on_bools(*operands)
        vectors = [z3.Int2BV(x, 64) for x in operands]
        return z3.BV2Int(on_ints(*vectors), is_signed=True)

    return apply


class _PythonSemantics:
    """Python's arithmetic spelled in z3, whose own Int/Real operators round differently.

    Side conditions Python enforces by raising (a zero divisor, ``0 ** -1``) become
    assertions of the validator: only assignments that satisfy them are considered.
    """

    def __init__(self, validator: TranslationValidator) -> None:
        self.validator = validator

    # Integer/real conversions, applied only when the sort is not already the wanted one.

    @staticmethod
    def to_real(x: z3.ArithRef) -> z3.ArithRef:
        """``x`` as a Real."""
        return z3.ToReal(x) if not x.is_real() else x

    @staticmethod
    def to_int(x: z3.ArithRef) -> z3.ArithRef:
        """``x`` as an Int; z3's ToInt is the floor."""
        return z3.ToInt(x) if not x.is_int() else x

    # Rounding.

    def floor(self, number: z3.ArithRef) -> z3.ArithRef:
        """``math.floor``."""
        return self.to_int(number)

    def ceil(self, number: z3.ArithRef) -> z3.ArithRef:
        """``math.ceil``: the floor, plus one unless the number already is integral."""
        below = self.floor(number)
        return z3.If(below < number, self.floor(number + 1), number)

    def trunc(self, number: z3.ArithRef) -> z3.ArithRef:
        """``math.trunc``: toward zero, the floor of positives and ceiling of negatives."""
        nonnegative = number >= 0
        return z3.If(nonnegative, self.floor(number), self.ceil(number))

    def round_to_int(self, number: z3.ArithRef) -> z3.ArithRef:
        """``round``: halves go to the even neighbour."""
        # A half rounds down exactly when the integer below it is even, that is when the
        # number mod 2 is 0.5; every other number rounds half up.
        even_half = self.mod(number, z3.IntVal(2)) == 0.5
        return z3.If(even_half, self.ceil(number - 0.5), self.floor(number + 0.5))

    # Division and friends.

    def div(self, numerator: z3.ArithRef, denominator: z3.ArithRef) -> z3.ArithRef:
        """``/``: real division of a non-zero denominator."""
        self.validator.add_assertion(denominator != 0)
        return self.to_real(numerator) / self.to_real(denominator)

    def floordiv(self, numerator: z3.ArithRef, denominator: z3.ArithRef) -> z3.ArithRef:
        """``//``: floored quotient, an Int unless an operand is Real (as in Python, where
        a float operand gives a float result)."""
        quotient = self.to_int(self.div(numerator, denominator))
        any_real = numerator.is_real() or denominator.is_real()
        return self.to_real(quotient) if any_real else quotient

    def mod(self, p: z3.ArithRef, q: z3.ArithRef) -> z3.ArithRef:
        """``%``: the remainder takes the divisor's sign, ``p - (p // q) * q``."""
        return p - self.floordiv(p, q) * q

    def pow(self, base: z3.ArithRef, exp: z3.ArithRef) -> z3.ArithRef:
        """``**``, away from ``0 ** e`` with ``e <= 0`` (no real value)."""
        self.validator.add_assertion(z3.Or(base != 0, exp > 0))
        return base**exp

    def sqrt(self, number: z3.ArithRef) -> z3.ArithRef:
        """Square root of a non-negative real (z3 answers unknown otherwise)."""
        radicand = self.to_real(number)
        self.validator.add_assertion(radicand >= 0)
        return radicand**0.5

    # Everything else.

    def sym_sum(self, args: Any) -> z3.ArithRef:
        """``torch.sym_sum``."""
        return sum(args)

    def abs(self, number: z3.ArithRef) -> z3.ArithRef:
        """``abs``."""
        return z3.Abs(number)

    def max(self, a: z3.ArithRef, b: z3.ArithRef) -> z3.ArithRef:
        """``max`` of two."""
        return z3.If(a > b, a, b)

    def min(self, a: z3.ArithRef, b: z3.ArithRef) -> z3.ArithRef:
        """``min`` of two."""
        return z3.If(a < b, a, b)

    bitwise_and = _bitwise(operator.and_, z3.And)
    bitwise_or = _bitwise(operator.or_, z3.Or)
    lshift = _bitwise(operator.lshift, None)
    rshift = _bitwise(operator.rshift, None)


def _handler_table() -> dict[type, str]:
    """SymPy function class -> the :class:`SympyToZ3` method it is translated with.

    Classes torch's SymPy interpreter knows but the validator has no z3 translation for are
    listed too: they map to a method name SympyToZ3 lacks, so translating them raises
    AttributeError ("unhandled operator") rather than KeyError.
    """
    table: dict[type, str] = {
        # logic and comparisons
        sympy.And: "and_",
        sympy.Or: "or_",
        sympy.Not: "not_",
        sympy.Eq: "eq",
        sympy.Ne: "ne",
        sympy.Lt: "lt",
        sympy.Le: "le",
        sympy.Gt: "gt",
        sympy.Ge: "ge",
        # arithmetic
        sympy.Add: "add",
        sympy.Mul: "mul",
        sympy.Pow: "pow_by_natural",
        tfn.PowByNatural: "pow_by_natural",
        tfn.FloatPow: "pow",
        tfn.IntTrueDiv: "int_truediv",
        tfn.FloatTrueDiv: "truediv",
        tfn.FloorDiv: "floordiv",
        tfn.CleanDiv: "floordiv",
        tfn.Mod: "mod",
        sympy.Mod: "mod",
        tfn.PythonMod: "python_mod",
        tfn.Min: "minimum",
        tfn.Max: "maximum",
        sympy.Min: "minimum",
        sympy.Max: "maximum",
        # known to torch's interpreter, not translated by the validator
        sympy.Abs: "abs",
        sympy.exp: "exp",
        sympy.log: "log",
        tfn.TruncToFloat: "trunc",
        tfn.Where: "where",
        tfn.ModularIndexing: "modular_indexing",
        tfn.Identity: "identity",
        tfn.IsNonOverlappingAndDenseIndicator: "is_non_overlapping_and_dense_indicator",
        tfn.RoundDecimal: "round_decimal",
        tfn.OpaqueUnaryFn_log2: "log2",
        sympy.Piecewise: "piecewise",
        sympy.functions.elementary.piecewise.ExprCondPair: "expr_cond_pair",
    }
    for name in ("sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan"):
        table[getattr(sympy, name)] = name
    return table


#: Rounding functions whose handler also receives the index dtype (int64).
_ROUNDING = {
    tfn.TruncToInt: "trunc_to_int",
    tfn.FloorToInt: "floor_to_int",
    tfn.CeilToInt: "ceil_to_int",
    tfn.RoundToInt: "round_to_int",
    sympy.floor: "floor_to_int",
    sympy.ceiling: "ceil_to_int",
}

#: Handlers applied pairwise, left to right, when the expression has more operands.
_FOLDED = frozenset({"add", "mul", "and_", "or_", "minimum", "maximum"})

_TABLE: dict[type, str] = {}


class SympyToZ3:
    """Translate SymPy expressions (including torch's SymPy functions) into z3 terms.

    Every free symbol must already have a z3 variable in the validator
    (:meth:`TranslationValidator.add_var`). Divisions and powers add their side conditions
    (non-zero divisor, no ``0 ** e`` with ``e <= 0``) to the validator as assertions.

    Args:
        validator: supplies the variables and receives the assertions.

    Example::

        >>> tv = TranslationValidator()
        >>> s0 = sympy.Symbol("s0", integer=True, positive=True)
        >>> _ = tv.add_var(s0, int)
        >>> SympyToZ3(tv).run(FloorDiv(s0, 2))
        ToInt(ToReal(s0)/ToReal(2))
    """

    OPERATOR_HANDLES = {"add", "mul", "eq", "ne", "lt", "gt", "le", "ge"}

    def __init__(self, validator: TranslationValidator) -> None:
        self._validator = validator
        self._ops = _PythonSemantics(validator)

    def constant(self, value: int | float | bool, dtype: torch.dtype) -> z3.ExprRef:
        """A z3 literal: int64 -> Int, double -> Real, bool -> Bool."""
        makers = {
            torch.int64: lambda v: z3.IntVal(int(v)),
            torch.double: lambda v: z3.RealVal(float(v)),
            torch.bool: lambda v: z3.BoolVal(bool(v)),
        }
        if dtype not in makers:
            raise ValueError(f"unsupported dtype (SympyToZ3): {dtype}")
        return makers[dtype](value)

    def to_dtype(self, x: z3.ArithRef, dtype: torch.dtype) -> z3.ArithRef:
        """``ToFloat``: only float64 is supported."""
        if dtype != torch.float64:
            raise NotImplementedError(f"to_dtype {dtype} NYI")
        return z3.ToReal(x)

    # Rounding to an integer; ``dtype`` (the index dtype) does not change the z3 term.

    def trunc_to_int(self, x: z3.ArithRef, dtype: torch.dtype) -> z3.ArithRef:
        """``TruncToInt``: toward zero, as ``int(x)``."""
        if x.is_int():
            return x
        # z3's ToInt floors: a negative value is truncated as minus the floor of its negation.
        return z3.If(x >= 0, z3.ToInt(x), -z3.ToInt(-x))

    def floor_to_int(self, x: z3.ArithRef, dtype: torch.dtype) -> z3.ArithRef:
        """``FloorToInt`` and ``floor``."""
        return self._ops.floor(x)

    def ceil_to_int(self, x: z3.ArithRef, dtype: torch.dtype) -> z3.ArithRef:
        """``CeilToInt`` and ``ceiling``."""
        return self._ops.ceil(x)

    def round_to_int(self, x: z3.ArithRef, dtype: torch.dtype) -> z3.ArithRef:
        """``RoundToInt``: halves to even."""
        return self._ops.round_to_int(x)

    # Division, powers and remainders, with Python's rules (see _PythonSemantics).

    def truediv(self, numerator: z3.ArithRef, denominator: z3.ArithRef) -> z3.ArithRef:
        """``FloatTrueDiv``."""
        return self._ops.div(numerator, denominator)

    def int_truediv(self, numerator: z3.ArithRef, denominator: z3.ArithRef) -> z3.ArithRef:
        """``IntTrueDiv``: a real quotient of integers."""
        return self._ops.div(numerator, denominator)

    def floordiv(self, numerator: z3.ArithRef, denominator: z3.ArithRef) -> z3.ArithRef:
        """``FloorDiv`` and ``CleanDiv``."""
        return self._ops.floordiv(numerator, denominator)

    def div(self, numerator: z3.ArithRef, denominator: z3.ArithRef) -> z3.ArithRef:
        """Integer division, floored."""
        return self._ops.floordiv(numerator, denominator)

    def mod(self, p: z3.ArithRef, q: z3.ArithRef) -> z3.ArithRef:
        """``Mod`` (defined for non-negative operands, where every convention agrees)."""
        return self._ops.mod(p, q)

    def python_mod(self, p: z3.ArithRef, q: z3.ArithRef) -> z3.ArithRef:
        """``PythonMod``: the divisor's sign."""
        return self._ops.mod(p, q)

    def pow_by_natural(self, base: z3.ArithRef, exp: z3.ArithRef) -> z3.ArithRef:
        """``PowByNatural`` and ``Pow`` with a non-negative integer exponent."""
        return self._ops.pow(base, exp)

    def pow(self, base: z3.ArithRef, exp: z3.ArithRef) -> z3.ArithRef:
        """``FloatPow`` and every other ``Pow``."""
        return self._ops.pow(base, exp)

    def __getattr__(self, name: str) -> Any:
        """The remaining handlers: connectives, bitwise operations, min/max, floor/ceil and
        the comparison operators; any other name is an operation without a translation."""
        if name.startswith("_"):
            raise AttributeError(name)
        ops = self.__dict__["_ops"]
        aliases: dict[str, Callable[..., Any]] = {
            "and_": z3.And, "or_": z3.Or, "not_": z3.Not,
            "bitwise_and": ops.bitwise_and, "bitwise_or": ops.bitwise_or,
            "lshift": ops.lshift, "rshift": ops.rshift,
            "floor": ops.floor, "ceil": ops.ceil, "minimum": ops.min, "maximum": ops.max,
        }
        if name in self.OPERATOR_HANDLES:
            return getattr(operator, name)
        try:
            return aliases[name]
        except KeyError:
            raise AttributeError(f"unhandled operator: {name}") from None

    def run(self, expr: sympy.Basic) -> z3.ExprRef:
        """Translate ``expr``.

        Raises:
            KeyError: a symbol without a z3 variable, or a SymPy function torch's
                interpreter does not know.
            AttributeError: a known function without a z3 translation (``Abs``, ``Where``,
                ``sqrt``, ...).
        """
        if isinstance(expr, BooleanAtom):
            return self.constant(expr, torch.bool)
        if isinstance(expr, sympy.Integer):
            return self.constant(expr, torch.int64)
        if isinstance(expr, sympy.Number):
            return self.constant(expr, torch.double)
        if isinstance(expr, sympy.Symbol):
            return self._validator.symbols[expr]
        operands = [self.run(arg) for arg in expr.args]
        return self._apply(expr, operands)

    def _apply(self, expr: sympy.Basic, operands: list[Any]) -> z3.ExprRef:
        func = expr.func
        if func is sympy.Pow and isinstance(expr.args[1], sympy.core.numbers.Half):
            return self.sqrt(operands[0])
        if isinstance(expr, tfn.ToFloat):
            return self.to_dtype(operands[0], torch.float64)
        if func in _ROUNDING:
            return getattr(self, _ROUNDING[func])(*operands, torch.int64)
        if func is sympy.Pow:
            exponent = expr.args[1]
            name = "pow_by_natural" if exponent.is_integer and exponent.is_nonnegative else "pow"
        elif hasattr(func, "_torch_handler_name"):
            name = func._torch_handler_name
        else:
            if not _TABLE:
                _TABLE.update(_handler_table())
            name = _TABLE[func]
        handler = getattr(self, name)
        if name not in _FOLDED:
            return handler(*operands)
        if len(operands) < 2:
            raise AssertionError("associative op needs >1 args")
        result = handler(operands[0], operands[1])
        for operand in operands[2:]:
            result = handler(result, operand)
        return result
