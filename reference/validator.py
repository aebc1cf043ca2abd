"""Translation validation of symbolic-shape guards with the z3 SMT solver.

Reference counterpart of ``torch.fx.experimental.validator``. Guards exist twice: as the
SymPy expressions the shape environment simplifies (the *target*) and as an fx graph of the
operations that produced them, built without simplification (the *source*). Both are
translated to z3 and the solver looks for an assignment where every target guard holds but
some source guard does not; finding one means a simplification was unsound.

The z3 terms are upstream's, operation by operation, except where upstream's term does not
mean what Python computes (``conform/known/`` lists these):

* ``TruncToInt`` rounds toward zero; upstream translates it as ``ToInt``, which floors;
* bitwise operations read their 64-bit result as a *signed* integer, as Python's ``&``,
  ``|``, ``>>`` do on negative numbers; upstream reads it unsigned.

Switches come from the environment variables upstream reads at import
(``TORCHDYNAMO_TRANSLATION_VALIDATION``, ``..._TIMEOUT``, ``TORCHDYNAMO_TRANSLATION_NO_BISECT``);
the runtime config object belongs to ``torch.fx.experimental`` and is not consulted.
"""

from __future__ import annotations

import builtins
import logging
import math
import operator
import os
from collections.abc import Callable
from typing import Any

import sympy
import torch
import torch.fx
import z3
from torch._dynamo.exc import TorchDynamoException
from torch.fx.node import Argument, Target

from reference._z3_semantics import SympyToZ3, _PythonSemantics, z3str

__all__ = [
    "TranslationValidator", "SympyToZ3", "PopulateValidator", "ValidationException",
    "BisectValidationException", "z3str", "z3op", "translation_validation_enabled",
    "translation_validation_timeout",
]

log = logging.getLogger(__name__)

_HAS_Z3 = True


def _to_z3(value: object, as_bool: bool) -> z3.ExprRef:
    """A Python or SymPy number as a z3 value (ints count as bools where ``as_bool``)."""
    match value:
        case z3.ArithRef() | z3.BoolRef():
            return value
        case bool():
            return z3.BoolVal(value)
        case int() if as_bool:
            return z3.BoolVal(bool(value))
        case int() | sympy.Integer():
            return z3.IntVal(int(value))
        case float() | sympy.Float():
            return z3.RealVal(float(value))
    raise ValueError(f"can't lift type: {type(value)}")


def z3op(op: Callable[..., Any], validator: TranslationValidator) -> Callable[..., Any]:
    """The z3 counterpart of a Python or torch function found in a guard graph.

    Arguments are converted to z3 values first (Python numbers become z3 constants; for
    ``not`` an int counts as a bool). Functions without a dedicated translation are applied
    to the converted arguments as they are (``operator.add`` works on z3 terms).

    Args:
        op: the function an fx ``call_function`` node calls.
        validator: receives the side conditions some translations need (non-zero divisors).

    Returns:
        A function of the original arguments returning a z3 term.
    """
    semantics = _PythonSemantics(validator)
    as_bool = op in (operator.not_, torch.sym_not)

    def lifted(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: object) -> Any:
            if len(args) == 1 and isinstance(args[0], (list, tuple)):
                return function(tuple(_to_z3(x, as_bool) for x in args[0]))
            return function(*(_to_z3(x, as_bool) for x in args))

        call.__name__ = getattr(function, "__name__", "z3op")
        return call

    # Functions whose z3 counterpart differs from applying them to z3 terms directly.
    arithmetic = {
        operator.truediv: semantics.div, operator.floordiv: semantics.floordiv,
        operator.mod: semantics.mod, operator.abs: semantics.abs,
        torch.sym_max: semantics.max, torch.sym_min: semantics.min,
        torch.sym_sum: semantics.sym_sum, torch.sym_float: semantics.to_real,
        torch._sym_sqrt: semantics.sqrt,  # type: ignore[attr-defined]
    }
    rounding = {
        math.floor: semantics.floor, math.ceil: semantics.ceil, math.trunc: semantics.trunc,
        builtins.round: semantics.round_to_int,
    }
    logic = {
        operator.not_: z3.Not, torch.sym_not: z3.Not,
        torch.sym_ite: lambda cond, then, other: z3.If(cond, then, other),
        operator.and_: semantics.bitwise_and, operator.or_: semantics.bitwise_or,
        operator.lshift: semantics.lshift, operator.rshift: semantics.rshift,
    }
    table: dict[Any, Callable[..., Any]] = {**arithmetic, **rounding, **logic}
    if op is torch._assert:
        # Only a marker: PopulateValidator turns its argument into a source guard.
        return torch._assert
    return lifted(table.get(op, op))


class PopulateValidator(torch.fx.Interpreter):
    """Walk a guard graph, translating each node to z3; the argument of every
    ``torch._assert`` call becomes a source guard of ``validator``.

    Placeholders stand for the SymPy symbols in their ``meta["symbol"]``, which must already
    have z3 variables (:meth:`TranslationValidator.add_var`).

    Args:
        graph: the guard graph.
        validator: the validator to populate.
    """

    def __init__(self, graph: torch.fx.Graph, validator: TranslationValidator) -> None:
        self.validator = validator
        self._running: torch.fx.Node | None = None
        super().__init__(torch.fx.GraphModule(root={}, graph=graph), garbage_collect_values=True)

    def run_node(self, n: torch.fx.Node) -> Any:
        self._running = n
        return super().run_node(n)

    def placeholder(
        self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]
    ) -> Any:
        assert self._running is not None
        return self.validator.z3var(self._running.meta["symbol"])

    def call_function(
        self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]
    ) -> Any:
        if target is torch._assert:
            if len(args) != 1:
                raise AssertionError(f"expected 1 argument on assertion. Got: {len(args)} ")
            self.validator.add_source_expr(args[0])  # type: ignore[arg-type]
            return None
        return super().call_function(z3op(target, self.validator), args, kwargs)  # type: ignore[arg-type]


class TranslationValidator:
    """Checks that target guards imply source guards, over all integer/real assignments.

    Symbols get z3 variables with :meth:`add_var`; guards are added as z3 terms
    (:meth:`add_source_expr`) or SymPy expressions (:meth:`add_target_expr`,
    :meth:`add_assertion`); :meth:`validate` asks z3 for a counterexample.
    """

    def __init__(self) -> None:
        #: SymPy symbol -> z3 variable.
        self.symbols: dict[sympy.Symbol, z3.ExprRef] = {}
        # The unsimplified guards, the guards actually checked (possibly simplified), and
        # facts both may assume. Sets: a guard added twice counts once.
        self._source_exprs: set[z3.BoolRef] = set()
        self._target_exprs: set[z3.BoolRef] = set()
        self._assertions: set[z3.BoolRef] = set()

    def z3var(self, symbol: sympy.Symbol) -> z3.ExprRef:
        """The z3 variable of ``symbol``; AssertionError when it has none."""
        variable = self.symbols.get(symbol)
        if variable is None:
            raise AssertionError(f"Z3 variable not found for: {symbol}")
        return variable

    def add_var(self, symbol: sympy.Symbol, type: type) -> z3.ExprRef:
        """Create (once) the z3 variable of ``symbol``.

        Args:
            symbol: the SymPy symbol; a positive one also gets the target guard ``var > 0``.
            type: ``int``, ``float`` or ``bool``.

        Returns:
            The z3 variable, named like the symbol.
        """
        if symbol not in self.symbols:
            sorts = {int: z3.Int, float: z3.Real, bool: z3.Bool}
            if type not in sorts:
                raise RuntimeError(f"unsupported type for Z3 variable: {type}")
            variable = sorts[type](symbol.name)
            # SymPy's positivity assumption is a fact the checked guards may rely on.
            if type is int and symbol.is_positive:
                self._target_exprs.add(variable > 0)
            self.symbols[symbol] = variable
            log.debug("z3 variable %s for %s", variable, symbol)
        return self.symbols[symbol]

    def _translate_condition(self, e: sympy.Basic) -> z3.BoolRef:
        for symbol in e.free_symbols:
            if not isinstance(symbol, sympy.Symbol):
                raise AssertionError(f"Expected sympy.Symbol, got {type(symbol)}")
            self.z3var(symbol)
        return self.to_z3_boolean_expr(e)

    def to_z3_boolean_expr(self, e: sympy.Basic) -> z3.BoolRef:
        """Translate a SymPy condition; AssertionError when it is not boolean."""
        term = SympyToZ3(self).run(e)
        if isinstance(term, z3.BoolRef):
            return term
        raise AssertionError(f"expected boolean expression. Got: {term}")

    def add_source_expr(self, e: z3.BoolRef) -> None:
        """Add a source guard (already a z3 term)."""
        self._source_exprs.add(e)

    def add_target_expr(self, e: sympy.logic.boolalg.Boolean) -> None:
        """Add a target guard, a SymPy condition over symbols that have variables."""
        self._target_exprs.add(self._translate_condition(e))

    def add_assertion(self, e: z3.BoolRef | sympy.Basic) -> None:
        """Add a fact both sides may assume (a z3 term or a SymPy condition)."""
        term = self._translate_condition(e) if isinstance(e, sympy.Basic) else e
        if not isinstance(term, z3.BoolRef):
            raise AssertionError(f"Expected z3.BoolRef, got {type(term)}")
        self._assertions.add(term)

    def validate(self) -> None:
        """Raise :class:`ValidationException` when the target guards do not imply the source
        guards under the assertions. Returns quietly when either side is empty, when the
        implication holds, or when z3 gives up (``unknown``, logged as a warning)."""
        if not (self._source_exprs and self._target_exprs):
            return None  # nothing to prove
        # A counterexample: every assertion and target guard holds, some source guard fails.
        # Non-linear real arithmetic (QF_NRA) suits guards: integers and reals mixed, products
        # of symbols, no quantifiers.
        solver = z3.SolverFor("QF_NRA")
        solver.set(timeout=translation_validation_timeout())
        solver.add(*self._assertions, *self._target_exprs, z3.Not(z3.And(*self._source_exprs)))
        verdict = solver.check()
        if verdict == z3.unsat:
            log.debug("translation validation: the target guards imply the source guards")
        elif verdict == z3.unknown:
            log.warning("translation validation: could not validate: got z3.unknown")
        elif verdict == z3.sat:
            model = solver.model()
            failed = [guard for guard in self._source_exprs if not model.evaluate(guard)]
            raise ValidationException(model, self._assertions, self._target_exprs, failed)
        else:
            raise AssertionError(f"Expected z3.unsat, got {verdict}")
        return None


def translation_validation_enabled() -> bool:
    """Whether translation validation is switched on (``TORCHDYNAMO_TRANSLATION_VALIDATION=1``)."""
    return _HAS_Z3 and os.environ.get("TORCHDYNAMO_TRANSLATION_VALIDATION", "0") == "1"


def translation_validation_timeout() -> int:
    """The z3 timeout in milliseconds (``TORCHDYNAMO_TRANSLATION_VALIDATION_TIMEOUT``, default
    600000)."""
    return int(os.environ.get("TORCHDYNAMO_TRANSLATION_VALIDATION_TIMEOUT", "600000"))


def _bullets(lines: Any) -> str:
    return "\n".join(f"  ==> {line}" for line in lines)


class ValidationException(TorchDynamoException):
    """Raised by :meth:`TranslationValidator.validate` with the counterexample.

    Args:
        model: the z3 model satisfying the targets but not every source guard.
        assertions, target_exprs: the validator's assumptions and target guards.
        failed_source_exprs: the source guards false under ``model``.
    """

    def __init__(
        self, model: Any, assertions: Any, target_exprs: Any, failed_source_exprs: Any
    ) -> None:
        self.msg = "translation validation failed."
        sections = [
            ("Model", sorted(f"{symbol}: {model[symbol]}" for symbol in model)),
            ("Assertions", sorted(map(z3str, assertions))),
            ("Target Expressions", sorted(map(z3str, target_exprs))),
            ("Failed Source Expressions", sorted(map(z3str, failed_source_exprs))),
        ]
        self.details = "\n\n".join(f"{title}:\n{_bullets(rows)}" for title, rows in sections)

    def __str__(self) -> str:
        return f"{self.msg}\n\n{self.details}"


class BisectValidationException(TorchDynamoException):
    """A :class:`ValidationException` narrowed to the guard-graph node that introduced it.

    Args:
        validation_exc: the failure found at that point.
        expr: the SymPy expression being evaluated or asserted there.
        failed_action: ``"evaluating"`` or ``"adding runtime assert"``.
        traced_node: the node of the traced program that issued it.
    """

    def __init__(
        self, validation_exc: ValidationException, expr: sympy.Basic, failed_action: str, traced_node: torch.fx.Node
    ) -> None:
        self.msg = f"translation validation failed when {failed_action}: {expr}"
        where = traced_node.format_node()
        self.details = f"Failure occurred while running node:\n    {where}\n\n{validation_exc.details}"

    def __str__(self) -> str:
        return f"{self.msg}\n\n{self.details}"


# Keys torch's shape environment uses in guard-graph node metadata.
_EVENT_KEY = "shapeenv_event"
_TRACED_NODE_KEY = "current_node"


def _rebind(shape_env: Any, fake: Any) -> Any:
    """``fake`` with every symbolic size re-created in ``shape_env`` (so a replayed
    environment is not simplified with facts learned later)."""
    symbolic = {torch.SymInt, torch.SymFloat}
    if type(fake) in symbolic:
        return type(fake)(fake.node.with_shape_env(shape_env))
    if isinstance(fake, int):
        return fake
    # A fake tensor's metadata: rebuilt with the same class from rebound sizes and strides.
    sizes = tuple(_rebind(shape_env, s) for s in fake.size())
    strides = tuple(_rebind(shape_env, s) for s in fake.stride())
    return type(fake)(sizes, strides, _rebind(shape_env, fake.storage_offset()), fake.is_nested)


def _guard_failure(shape_env: Any, tracked_fakes: Any) -> TorchDynamoException | None:
    """The validation failure ``produce_guards`` raises for ``shape_env``, or None.

    The shape environment validates with torch's own validator, so its failures are
    recognised by what they carry (the counterexample ``details``), not by class.
    """
    if tracked_fakes is None:
        raise AssertionError("tracked_fakes is None")
    fakes, sources, contexts = [], [], []
    for tracked in tracked_fakes:
        fakes.append(_rebind(shape_env, tracked.fake))
        sources.append(tracked.source)
        contexts.append(tracked.symbolic_context)
    try:
        shape_env.produce_guards(fakes, sources, input_contexts=contexts)
    except TorchDynamoException as failure:
        if not hasattr(failure, "details") or isinstance(failure, BisectValidationException):
            raise
        return failure
    return None


def _replay(events: list[Any]) -> Any:
    """A fresh shape environment with ``events`` replayed (the first one constructs it)."""
    shape_env = events[0].run()
    for event in events[1:]:
        event.run(shape_env)
    return shape_env


def bisect(shape_env: Any) -> None:
    """Find the guard that made translation validation of ``shape_env`` fail.

    Replays the environment's recorded events up to each ``torch._assert`` node of its guard
    graph, binary-searching for the first one after which ``produce_guards`` fails.

    Args:
        shape_env: a ``ShapeEnv`` recording events with translation validation on.

    Raises:
        BisectValidationException: naming the guard and the traced node responsible.
        ValidationException: the failure itself, when bisection is off
            (``TORCHDYNAMO_TRANSLATION_NO_BISECT=1``) or events are not recorded.
    """
    events = shape_env.events
    final = _guard_failure(shape_env, shape_env._snapshot_tracked_fakes())
    if final is None:
        log.info("translation validation succeeded: no errors found.")
        return
    no_bisect = os.environ.get("TORCHDYNAMO_TRANSLATION_NO_BISECT", "0") == "1"
    if not shape_env.should_record_events or no_bisect:
        raise final

    asserts = [n for n in shape_env.graph.nodes if n.target is torch._assert]

    def failure_at(node: torch.fx.Node) -> ValidationException | None:
        index = node.meta[_EVENT_KEY]
        replayed = _replay(events[: index + 1])
        replayed.graph.lint()
        return _guard_failure(replayed, events[index].tracked_fakes)

    # Invariant: asserts before `low` pass, the one at `high` fails (failures[high] is set).
    low, high = 0, len(asserts) - 1
    failures = {high: failure_at(asserts[high])}
    while low < high:
        middle = (low + high) // 2
        failures[middle] = failure_at(asserts[middle])
        if failures[middle] is not None:
            high = middle
        else:
            low = middle + 1
    found = failures.get(low)
    if found is None:
        raise AssertionError("bisection ended on a guard that does not fail")

    node = asserts[low]
    event = events[node.meta[_EVENT_KEY]]
    actions = {"evaluating": event.is_evaluate_expr(), "adding runtime assert": event.is_defer_runtime_assert()}
    chosen = [name for name, applies in actions.items() if applies]
    if not chosen:
        raise AssertionError(f"unexpected event type: {event}")
    arguments = event.args or ()
    if len(arguments) < 2 or not isinstance(arguments[1], sympy.Basic):
        raise AssertionError(f"{event.name} should receive a SymPy expression as its second argument")
    raise BisectValidationException(
        found, expr=arguments[1], failed_action=chosen[0], traced_node=node.meta[_TRACED_NODE_KEY]
    )
