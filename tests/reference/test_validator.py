"""validator: the z3 terms SympyToZ3 builds, z3str, TranslationValidator verdicts, z3op and
PopulateValidator, on both implementations.

The term table pins ``str()`` of each translation and the side conditions it adds; both
implementations must produce exactly these. Rows marked with a known divergence id are the
translations upstream gets wrong: the table holds the correct term and upstream fails them.
"""

from __future__ import annotations

import math
import operator

import pytest
import sympy
import torch
import torch.fx
import z3
from _known import upstream_bug
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._sympy import functions as F

from conform.implementations import Implementation

s0, s1, s2 = (sympy.Symbol(f"s{i}", integer=True, positive=True) for i in range(3))
x = sympy.Symbol("x", real=True)
flag = sympy.Symbol("flag")


def validator(impl: Implementation):
    tv = impl.validator.TranslationValidator()
    for symbol in (s0, s1, s2):
        tv.add_var(symbol, int)
    tv.add_var(x, float)
    tv.add_var(flag, bool)
    return tv


def translate(impl: Implementation, expr: sympy.Basic) -> tuple[str, list[str]]:
    tv = validator(impl)
    term = impl.validator.SympyToZ3(tv).run(expr)
    return str(term), sorted(str(a) for a in tv._assertions)


NONZERO = "s1 != 0"
TERMS = [
    # (expression, term, assertions, known divergence)
    (s0 + s1, "s0 + s1", [], None),
    (s0 + s1 + s2, "s0 + s1 + s2", [], None),
    (s0 * s1 * s2, "s0*s1*s2", [], None),
    (s0 - s1, "s0 + -1*s1", [], None),
    (F.FloorDiv(s0, s1), "ToInt(ToReal(s0)/ToReal(s1))", [NONZERO], None),
    (F.FloorDiv(x, 2), "ToReal(ToInt(x/ToReal(2)))", ["2 != 0"], None),
    (F.CleanDiv(s0 * s1, s2), "ToInt(ToReal(s0*s1)/ToReal(s2))", ["s2 != 0"], None),
    (F.Mod(s0, s1), "s0 - ToInt(ToReal(s0)/ToReal(s1))*s1", [NONZERO], None),
    (F.PythonMod(s0, s1), "s0 - ToInt(ToReal(s0)/ToReal(s1))*s1", [NONZERO], None),
    (F.PowByNatural(s0, 3), "s0**3", ["Or(s0 != 0, 3 > 0)"], None),
    (s0**2, "s0**2", ["Or(s0 != 0, 2 > 0)"], None),
    (1 / s0, "s0**-1", ["Or(s0 != 0, -1 > 0)"], None),
    (F.FloatPow(x, 2.5), "x**(5/2)", ["Or(x != 0, 5/2 > 0)"], None),
    (F.IntTrueDiv(s0, s1), "ToReal(s0)/ToReal(s1)", [NONZERO], None),
    (F.FloatTrueDiv(x, 4.0), "x/4", ["4 != 0"], None),
    (F.ToFloat(s0), "ToReal(s0)", [], None),
    (F.FloorToInt(x), "ToInt(x)", [], None),
    (sympy.floor(x), "ToInt(x)", [], None),
    (F.CeilToInt(x), "If(ToReal(ToInt(x)) < x, ToReal(ToInt(x + 1)), x)", [], None),
    (sympy.ceiling(x), "If(ToReal(ToInt(x)) < x, ToReal(ToInt(x + 1)), x)", [], None),
    (F.TruncToInt(x), "If(x >= 0, ToInt(x), -ToInt(-x))", [], "validator-trunc-to-int"),
    (F.Max(s0, s1), "If(s0 > s1, s0, s1)", [], None),
    (F.Min(s0, s1, s2), "If(If(s0 < s1, s0, s1) < s2, If(s0 < s1, s0, s1), s2)", [], None),
    (sympy.Eq(s0, s1), "s0 == s1", [], None),
    (sympy.Ne(s0, 3), "3 != s0", [], None),
    (sympy.Lt(s0, s1), "s0 < s1", [], None),
    (sympy.Le(s0, s1), "s0 <= s1", [], None),
    (sympy.Gt(s0, 2), "2 < s0", [], None),
    (sympy.Ge(s0, s1), "s0 >= s1", [], None),
    (sympy.And(sympy.Eq(s0, 2), sympy.Lt(s1, 3)), "And(2 == s0, 3 > s1)", [], None),
    (sympy.Or(sympy.Eq(s0, 2), sympy.Lt(s1, 3), flag), "Or(Or(flag, 2 == s0), 3 > s1)", [], None),
    (sympy.Not(flag), "Not(flag)", [], None),
    (sympy.Rational(1, 4) * x, "1/4*x", [], None),
    (x + 0.5, "1/2 + x", [], None),
    (sympy.true, "True", [], None),
    (sympy.Integer(7), "7", [], None),
    (
        F.BitwiseFn_bitwise_and(s0, s1),
        "If(int_to_bv(s0) & int_to_bv(s1) < 0,\n   BV2Int(int_to_bv(s0) & int_to_bv(s1)) -\n"
        "   18446744073709551616,\n   BV2Int(int_to_bv(s0) & int_to_bv(s1)))",
        [],
        "validator-bitwise-unsigned",
    ),
    (
        F.BitwiseFn_bitwise_or(s0, s1),
        "If(int_to_bv(s0) | int_to_bv(s1) < 0,\n   BV2Int(int_to_bv(s0) | int_to_bv(s1)) -\n"
        "   18446744073709551616,\n   BV2Int(int_to_bv(s0) | int_to_bv(s1)))",
        [],
        "validator-bitwise-unsigned",
    ),
    (F.BitwiseFn_bitwise_and(flag, sympy.Eq(s0, 1)), "And(flag, 1 == s0)", [], None),
]


@pytest.mark.parametrize(("expr", "term", "assertions", "known"), TERMS, ids=[str(t[0]) for t in TERMS])
def test_sympy_to_z3_terms(
    impl: Implementation, request: pytest.FixtureRequest, expr, term: str, assertions: list[str], known
) -> None:
    if known:
        upstream_bug(request, impl, known)
    assert translate(impl, expr) == (term, assertions)


def test_round_to_int_term(impl: Implementation) -> None:
    term, assertions = translate(impl, F.RoundToInt(x))
    assert term.startswith("If(x - ToReal(ToInt(x/ToReal(2)))*ToReal(2) == 1/2,")
    assert assertions == ["2 != 0"]


@pytest.mark.parametrize(
    "expr",
    [
        sympy.Abs(x),
        sympy.sqrt(x),
        F.Where(sympy.Eq(s0, 1), s1, s2),
        F.BitwiseFn_bitwise_xor(s0, s1),
        F.TruncToFloat(x),
        F.Identity(s0),
        F.ModularIndexing(s0, 2, 4),
        F.RoundDecimal(x, 2),
        sympy.sin(x),
        sympy.Piecewise((s0, sympy.Gt(s0, 2)), (s1, True)),
    ],
    ids=str,
)
def test_untranslated_functions_raise_attribute_error(impl: Implementation, expr) -> None:
    with pytest.raises(AttributeError, match="unhandled operator"):
        translate(impl, expr)


def test_unknown_symbol_raises_key_error(impl: Implementation) -> None:
    with pytest.raises(KeyError):
        translate(impl, sympy.Symbol("u") + 1)


def test_constants(impl: Implementation) -> None:
    to_z3 = impl.validator.SympyToZ3(impl.validator.TranslationValidator())
    assert str(to_z3.constant(3, torch.int64)) == "3"
    assert str(to_z3.constant(0.25, torch.double)) == "1/4"
    assert str(to_z3.constant(True, torch.bool)) == "True"
    with pytest.raises(ValueError, match="unsupported dtype"):
        to_z3.constant(1, torch.int32)
    with pytest.raises(NotImplementedError):
        to_z3.to_dtype(z3.Int("i"), torch.int32)


# --- what the terms mean: z3's value at a point equals Python's --------------------------------


def z3_value(impl: Implementation, expr: sympy.Expr, point: dict[sympy.Symbol, int]) -> object:
    tv = impl.validator.TranslationValidator()
    for symbol in point:
        tv.add_var(symbol, int)
    term = impl.validator.SympyToZ3(tv).run(expr)
    substituted = z3.substitute(term, *[(tv.z3var(s), z3.IntVal(v)) for s, v in point.items()])
    value = z3.simplify(substituted)
    return value.as_long() if z3.is_int_value(value) else value.as_fraction()


a, b = sympy.symbols("a b", integer=True)
SEMANTICS = [
    (F.FloorDiv(a, b), lambda p, q: p // q, None),
    (F.PythonMod(a, b), lambda p, q: p % q, None),
    (F.FloorToInt(F.IntTrueDiv(a, b)), lambda p, q: math.floor(p / q), None),
    (F.CeilToInt(F.IntTrueDiv(a, b)), lambda p, q: math.ceil(p / q), None),
    (F.RoundToInt(F.IntTrueDiv(a, b)), lambda p, q: round(p / q), None),
    (F.TruncToInt(F.IntTrueDiv(a, b)), lambda p, q: math.trunc(p / q), "validator-trunc-to-int"),
    (F.BitwiseFn_bitwise_and(a, b), lambda p, q: p & q, "validator-bitwise-unsigned"),
    (F.BitwiseFn_bitwise_or(a, b), lambda p, q: p | q, "validator-bitwise-unsigned"),
]


@pytest.mark.parametrize(("expr", "python", "known"), SEMANTICS, ids=[str(s[0]) for s in SEMANTICS])
def test_terms_mean_what_python_computes(impl: Implementation, request: pytest.FixtureRequest, expr, python, known) -> None:
    if known:
        upstream_bug(request, impl, known)

    @settings(max_examples=30, deadline=None)
    @given(p=st.integers(-20, 20), q=st.integers(-6, 6).filter(bool))
    def agrees(p: int, q: int) -> None:
        assert z3_value(impl, expr, {a: p, b: q}) == python(p, q)

    agrees()


# --- z3str -----------------------------------------------------------------------------------


i, j = z3.Ints("i j")
r = z3.Real("r")
Z3STR = [
    (i + j + 2, "(+ 2 i j)"),
    (i * j * 3, "(* 3 i j)"),
    (i != j, "(!= i j)"),
    (i > j, "(> i j)"),
    (i < j, "(> j i)"),
    (z3.ToInt(z3.ToReal(i) / z3.ToReal(j)), "(idiv i j)"),
    (z3.ToReal(i) + r, "(+ i r)"),
    (i**2, "(* i i)"),
    (r**i, "(pow r i)"),
    (z3.And(i > 0, j > 0), "(And (> i 0) (> j 0))"),
    (z3.IntVal(5), "5"),
    (z3.RealVal("1/3"), "1/3"),
    (i, "i"),
]


@pytest.mark.parametrize(("term", "text"), Z3STR, ids=[t[1] for t in Z3STR])
def test_z3str(impl: Implementation, term, text: str) -> None:
    assert impl.validator.z3str(term) == text


def test_z3str_refuses_non_expressions(impl: Implementation) -> None:
    with pytest.raises(AssertionError):
        impl.validator.z3str(3)


# --- TranslationValidator --------------------------------------------------------------------


def test_add_var(impl: Implementation) -> None:
    tv = impl.validator.TranslationValidator()
    assert tv.add_var(s0, int) is tv.add_var(s0, int)
    assert tv.add_var(x, float).is_real() and isinstance(tv.add_var(flag, bool), z3.BoolRef)
    assert [str(e) for e in tv._target_exprs] == ["s0 > 0"]  # positive symbols only
    with pytest.raises(RuntimeError, match="unsupported type"):
        tv.add_var(sympy.Symbol("z"), str)
    with pytest.raises(AssertionError, match="not found"):
        tv.z3var(sympy.Symbol("w"))


def test_add_target_expr_needs_known_symbols(impl: Implementation) -> None:
    tv = impl.validator.TranslationValidator()
    with pytest.raises(AssertionError):
        tv.add_target_expr(sympy.Gt(s0, 1))


def test_non_boolean_targets_are_refused(impl: Implementation) -> None:
    tv = validator(impl)
    with pytest.raises(AssertionError, match="boolean"):
        tv.add_target_expr(s0 + 1)


def test_add_assertion(impl: Implementation) -> None:
    tv = validator(impl)
    tv.add_assertion(sympy.Gt(s0, 4))
    tv.add_assertion(z3.Int("s1") < 9)
    assert sorted(str(e) for e in tv._assertions) == ["4 < s0", "s1 < 9"]


def test_sound_simplification_validates(impl: Implementation) -> None:
    tv = validator(impl)
    v0, v1 = tv.z3var(s0), tv.z3var(s1)
    tv.add_source_expr(v0 * 2 > v1)
    tv.add_source_expr(v0 + v1 > 1)
    tv.add_target_expr(sympy.Gt(s0, s1))
    tv.validate()


def test_unsound_simplification_is_reported_with_a_model(impl: Implementation) -> None:
    tv = validator(impl)
    tv.add_source_expr(tv.z3var(s0) > tv.z3var(s1))
    tv.add_target_expr(sympy.Gt(2 * s0, s1))
    with pytest.raises(impl.validator.ValidationException) as info:
        tv.validate()
    text = str(info.value)
    assert text.startswith("translation validation failed.")
    for section in ("Model:", "Assertions:", "Target Expressions:", "Failed Source Expressions:"):
        assert section in text
    assert "  ==> (> s0 s1)" in text
    assert "  ==> (> (* 2 s0) s1)" in text


def test_assertions_restrict_the_search(impl: Implementation) -> None:
    tv = validator(impl)
    tv.add_source_expr(tv.z3var(s0) > 4)
    tv.add_target_expr(sympy.Gt(s0, 2))
    tv.add_assertion(sympy.Gt(s0, 4))
    tv.validate()


def test_floor_division_guard(impl: Implementation) -> None:
    # s0 // 2 == 3 exactly when s0 is 6 or 7
    tv = validator(impl)
    tv.add_source_expr(z3.Or(tv.z3var(s0) == 6, tv.z3var(s0) == 7))
    tv.add_target_expr(sympy.Eq(F.FloorDiv(s0, 2), 3))
    tv.validate()
    tv = validator(impl)
    tv.add_source_expr(tv.z3var(s0) == 6)
    tv.add_target_expr(sympy.Eq(F.FloorDiv(s0, 2), 3))
    with pytest.raises(impl.validator.ValidationException):
        tv.validate()


def test_nothing_to_prove(impl: Implementation) -> None:
    tv = validator(impl)
    tv.add_target_expr(sympy.Gt(s0, 100))
    tv.validate()  # no source guards
    tv = impl.validator.TranslationValidator()
    tv.add_source_expr(z3.BoolVal(False))
    tv.validate()  # no target guards


def test_settings(impl: Implementation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHDYNAMO_TRANSLATION_VALIDATION", raising=False)
    assert impl.validator.translation_validation_enabled() is False
    assert impl.validator.translation_validation_timeout() == 600000


# --- z3op and PopulateValidator --------------------------------------------------------------


def test_z3op_lifts_python_values(impl: Implementation) -> None:
    tv = impl.validator.TranslationValidator()
    z3op = impl.validator.z3op
    assert str(z3op(operator.add, tv)(z3.Int("n"), 2)) == "n + 2"
    assert str(z3op(operator.not_, tv)(1)) == "Not(True)"
    assert str(z3op(torch.sym_max, tv)(z3.Int("n"), 3)) == "If(3 < n, n, 3)"
    assert str(z3op(math.floor, tv)(z3.Real("q"))) == "ToInt(q)"
    assert str(z3op(torch.sym_float, tv)(z3.Int("n"))) == "ToReal(n)"
    assert str(z3op(torch.sym_sum, tv)([z3.Int("n"), 1, 2])) == "0 + n + 1 + 2"
    assert str(z3op(torch.sym_ite, tv)(z3.Bool("c"), 1, 2)) == "If(c, 1, 2)"
    assert z3op(torch._assert, tv) is torch._assert
    with pytest.raises(ValueError, match="can't lift"):
        z3op(operator.add, tv)("text", 1)


def test_z3op_division_adds_its_condition(impl: Implementation) -> None:
    tv = impl.validator.TranslationValidator()
    n = z3.Int("n")
    assert str(impl.validator.z3op(operator.floordiv, tv)(n, 4)) == "ToInt(ToReal(n)/ToReal(4))"
    assert [str(e) for e in tv._assertions] == ["4 != 0"]


def test_populate_validator_collects_asserted_guards(impl: Implementation) -> None:
    graph = torch.fx.Graph()
    p0 = graph.placeholder("s0")
    p0.meta["symbol"] = s0
    p1 = graph.placeholder("s1")
    p1.meta["symbol"] = s1
    half = graph.call_function(operator.floordiv, (p0, 2))
    larger = graph.call_function(torch.sym_max, (half, p1))
    graph.call_function(torch._assert, (graph.call_function(operator.ge, (larger, p1)),))
    graph.output(None)
    tv = validator(impl)
    # the upstream validator reads node metadata through fx's preserved-meta hook
    with torch.fx.traceback.preserve_node_meta():
        impl.validator.PopulateValidator(graph, tv).run()
    assert [str(e) for e in tv._source_exprs] == [
        "If(ToInt(ToReal(s0)/ToReal(2)) > s1,\n   ToInt(ToReal(s0)/ToReal(2)),\n   s1) >=\ns1"
    ]
    assert [str(e) for e in tv._assertions] == ["2 != 0"]
    tv.add_target_expr(sympy.Gt(s1, 0))
    tv.validate()
