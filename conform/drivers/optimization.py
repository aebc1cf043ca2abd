"""Drivers for the optimization family rows that need more than a generic convention:
``optimize_for_inference`` (a pass config rebuilt from JSON-able parameters, and a check that
the input module is left as it was) and ``validator`` (translation validation of a symbolic
expression over the case's input sizes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sympy
import torch
from torch.utils._sympy import functions as tfn

from conform.adapters import Applied, NotApplicable, Subject, clone_values, graph_modules_in
from conform.compare import compare_values
from conform.execute import seed_everything

if TYPE_CHECKING:
    from conform.implementations import Implementation
    from conform.registry import TransformSpec


class InputModified(AssertionError):
    """A transform changed what the module it was given computes (it must work on a copy)."""


class TranslationMismatch(AssertionError):
    """The z3 translation of an expression disagrees with Python's evaluation of it."""


# --- optimize_for_inference ------------------------------------------------------------------


def _heuristic(impl: Implementation, name: str, inputs: tuple[Any, ...]) -> Any:
    optimization = impl.optimization
    choices = {
        "length": lambda: optimization.use_mkl_length,
        "always": lambda: lambda subgraph: True,
        "never": lambda: lambda subgraph: False,
        "autotune": lambda: optimization.gen_mkl_autotuner(list(inputs), iters=1, warmup=0),
    }
    if name not in choices:
        raise ValueError(f"unknown mkldnn heuristic {name!r} (valid: off, {', '.join(choices)})")
    return choices[name]()


def _float32_cpu(values: Any) -> bool:
    leaves = torch.utils._pytree.tree_leaves(values)
    tensors = [v for v in leaves if isinstance(v, torch.Tensor)]
    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.layout == torch.strided
               for t in tensors)


def _submodule_classes(module: torch.nn.Module) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in module.named_modules()]


def _run_seeded(module: torch.nn.Module, subject: Subject) -> Any:
    """Call ``module`` on copies of the subject's inputs from one fixed RNG state, so a
    module drawing random numbers (torch.rand in forward) gives the same outputs on every
    call; the caller's RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        seed_everything(0)
        return module(*clone_values(subject.inputs), **clone_values(subject.kwargs))


def drive_optimize_for_inference(
    impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]
) -> Applied:
    """``optimize_for_inference(module, pass_config)`` with ``params`` ``conv_bn_fuse``,
    ``remove_dropout`` and ``mkldnn`` (``"off"`` or a heuristic name, see
    :mod:`generators.params.optimization`).

    Not applicable to modules in training mode (the pass is for inference) or to inputs that
    are not float32 CPU tensors: the pass is for float32 CPU models (its layout pass rejects
    other dtypes), and folding at lower precisions, which rounds differently from the eager
    module, is the ``fuse`` row's to check.
    Raises :class:`InputModified` when the transform replaced submodules of
    ``subject.module`` or changed what it computes.
    """
    module = subject.module
    if module.training:
        raise NotApplicable("optimize_for_inference is for modules in eval mode")
    layout = params.get("mkldnn", "length")
    if not (_float32_cpu(subject.inputs) and _float32_cpu(subject.kwargs)):
        raise NotApplicable("optimize_for_inference is for float32 CPU models and inputs")
    config: dict[str, Any] = {
        "conv_bn_fuse": params.get("conv_bn_fuse", True),
        "remove_dropout": params.get("remove_dropout", True),
        "mkldnn_layout_optimize": False
        if layout == "off"
        else {"heuristic": _heuristic(impl, layout, subject.inputs)},
    }
    before = _run_seeded(module, subject)
    layout_before = _submodule_classes(module)
    result = impl.resolve(row.target)(module, config)
    layout_after = _submodule_classes(module)
    if layout_after != layout_before:
        changed = sorted(set(layout_after) - set(layout_before))
        raise InputModified(f"optimize_for_inference replaced submodules of its input: {changed}")
    try:
        after = _run_seeded(module, subject)
    except Exception as exc:
        raise InputModified(
            f"after optimize_for_inference the input module raises {type(exc).__name__}: {exc}"
        ) from exc
    diff = compare_values(before, after)
    if diff is not None:
        raise InputModified(f"after optimize_for_inference the input module computes otherwise: {diff}")
    return Applied(runnable=result, value=result, subject=subject, graphs=graph_modules_in(result))


# --- validator -------------------------------------------------------------------------------


def _input_sizes(subject: Subject) -> list[int]:
    leaves = torch.utils._pytree.tree_leaves((subject.inputs, subject.kwargs))
    return [int(size) for leaf in leaves if isinstance(leaf, torch.Tensor) for size in leaf.shape]


def _build(tree: list[Any], symbols: list[sympy.Symbol]) -> sympy.Expr:
    kind = tree[0]
    if kind == "sym":
        return symbols[tree[1] % len(symbols)]
    if kind == "int":
        return sympy.Integer(tree[1])
    left, right = _build(tree[1], symbols), _build(tree[2], symbols)
    if kind == "pow":
        # Natural exponents only, kept small: a literal's magnitude mod 4, else a square.
        exponent = abs(tree[2][1]) % 4 if tree[2][0] == "int" else 2
        return tfn.PowByNatural(left, sympy.Integer(exponent))
    builders = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "floordiv": tfn.FloorDiv,
        "mod": tfn.Mod,
        "pymod": tfn.PythonMod,
        "max": tfn.Max,
        "min": tfn.Min,
        "trunc_div": lambda a, b: tfn.TruncToInt(tfn.IntTrueDiv(a, b)),
        "round_div": lambda a, b: tfn.RoundToInt(tfn.IntTrueDiv(a, b)),
        "ceil_div": lambda a, b: tfn.CeilToInt(tfn.IntTrueDiv(a, b)),
        "floor_div": lambda a, b: tfn.FloorToInt(tfn.IntTrueDiv(a, b)),
        "clean_div": lambda a, b: tfn.CleanDiv(a * b, b),
        "band": tfn.BitwiseFn_bitwise_and,
        "bor": tfn.BitwiseFn_bitwise_or,
    }
    return builders[kind](left, right)


def drive_validator(
    impl: Implementation, row: TransformSpec, subject: Subject, params: dict[str, Any]
) -> Applied:
    """Translation-validate ``params["expr"]`` (see :mod:`generators.params.optimization`)
    with the case's input sizes as the values of its symbols.

    The source guard is ``Eq(expr, value)`` with ``value`` what SymPy (Python semantics)
    computes at the case's sizes, translated with the implementation's ``SympyToZ3``; the
    target guards pin every symbol to its size. Validation must succeed, and must fail for
    the source guard ``Ne(expr, value)``: otherwise the z3 term does not mean what Python
    computes, and :class:`TranslationMismatch` is raised. The applied value (the row's
    fingerprint) is the expression with its z3 term and the value.
    """
    validator = impl.validator
    sizes = _input_sizes(subject)
    if not sizes:
        raise NotApplicable("the case has no tensor input whose sizes could be symbols")
    symbols = [sympy.Symbol(f"s{i}", integer=True, positive=size > 0) for i, size in enumerate(sizes)]
    try:
        expr = _build(params["expr"], symbols)
        value = expr.subs(dict(zip(symbols, map(sympy.Integer, sizes))))
    except Exception as exc:
        raise NotApplicable(f"the expression is undefined at the case's sizes: {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, sympy.Integer):
        raise NotApplicable(f"the expression is not an integer at the case's sizes: {value}")
    used = sorted(expr.free_symbols, key=lambda s: s.name)
    pinned = {s: sympy.Integer(sizes[symbols.index(s)]) for s in used}

    def check(guard: sympy.Basic) -> tuple[Any, Exception | None]:
        tv = validator.TranslationValidator()
        for symbol in used:
            tv.add_var(symbol, int)
        term = validator.SympyToZ3(tv).run(guard)
        tv.add_source_expr(term)
        for symbol, size in pinned.items():
            tv.add_target_expr(sympy.Eq(symbol, size))
        try:
            tv.validate()
        except validator.ValidationException as failure:
            return term, failure
        return term, None

    term, failure = check(sympy.Eq(expr, value, evaluate=False))
    where = ", ".join(f"{s}={v}" for s, v in pinned.items())
    if failure is not None:
        raise TranslationMismatch(f"z3 says {expr} != {value} at {where}; the term is {term}\n{failure}")
    if used:
        _, refuted = check(sympy.Ne(expr, value, evaluate=False))
        if refuted is None:
            raise TranslationMismatch(f"z3 accepts {expr} != {value} at {where} too; the term is {term}")
    fingerprint = {"term": f"{expr} -> {term}", "value": int(value)}
    return Applied(runnable=None, value=fingerprint, subject=subject, graphs=[])
