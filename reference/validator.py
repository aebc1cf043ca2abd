"""Translation validation of symbolic-shape guards with the z3 SMT solver.

Reference counterpart of ``torch.fx.experimental.validator``. Guards exist twice: as the
SymPy expressions the shape environment simplifies (the *target*) and as an fx graph of the
operations that produced them, built without simplification (the *source*). Both are
translated to z3 and the solver looks for an assignment where every target guard holds but
some source guard does not; finding one means a simplification was unsound.

The z3 terms are upstream's, operation by operation, except where upstream's term does not
mean what Python computes (``conform/known.py`` lists these):

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
    "z3str",
    "z3op",
    "PopulateValidator",
    "SympyToZ3",
    "TranslationValidator",
    "translation_validation_enabled",
    "translation_validation_timeout",
    "ValidationException",
    "BisectValidationException",
]

log = logging.getLogger(__name__)

_HAS_Z3 = True


def _to_z3(value: object, as_bool: bool) -> z3.ExprRef:
    if isinstance(value, (z3.ArithRef, z3.BoolRef)):
        return value
    if isinstance(value, bool) or (as_bool and isinstance(value, int)):
        return z3.BoolVal(bool(value))
    if isinstance(value, (int, sympy.Integer)):
        return z3.IntVal(int(value))
    if isinstance(value, (float, sympy.Float)):
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

    table: dict[Any, Callable[..., Any]] = {
        operator.not_: z3.Not,
        operator.and_: semantics.bitwise_and,
        operator.or_: semantics.bitwise_or,
        operator.lshift: semantics.lshift,
        operator.rshift: semantics.rshift,
        operator.floordiv: semantics.floordiv,
        operator.truediv: semantics.div,
        operator.mod: semantics.mod,
        operator.abs: semantics.abs,
        builtins.round: semantics.round_to_int,
        math.ceil: semantics.ceil,
        math.floor: semantics.floor,
        math.trunc: semantics.trunc,
        torch.sym_float: semantics.to_real,
        torch.sym_max: semantics.max,
        torch.sym_min: semantics.min,
        torch.sym_not: z3.Not,
        torch.sym_sum: semantics.sym_sum,
        torch.sym_ite: lambda cond, then, other: z3.If(cond, then, other),
        torch._sym_sqrt: semantics.sqrt,  # type: ignore[attr-defined]
    }
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
        log.debug("new instance")
        self.symbols: dict[sympy.Symbol, z3.ExprRef] = {}
        self._source_exprs: set[z3.BoolRef] = set()
        self._target_exprs: set[z3.BoolRef] = set()
        self._assertions: set[z3.BoolRef] = set()

    def z3var(self, symbol: sympy.Symbol) -> z3.ExprRef:
        """The z3 variable of ``symbol``; AssertionError when it has none."""
        if symbol not in self.symbols:
            raise AssertionError(f"Z3 variable not found for: {symbol}")
        return self.symbols[symbol]

    def add_var(self, symbol: sympy.Symbol, type: type) -> z3.ExprRef:
        """Create (once) the z3 variable of ``symbol``.

        Args:
            symbol: the SymPy symbol; a positive one also gets the target guard ``var > 0``.
            type: ``int``, ``float`` or ``bool``.

        Returns:
            The z3 variable, named like the symbol.
        """
        if symbol in self.symbols:
            return self.symbols[symbol]
        log.debug("new variable: %s (%s)", symbol.name, type.__name__)
        makers = {int: z3.Int, float: z3.Real, bool: z3.Bool}
        if type not in makers:
            raise RuntimeError(f"unsupported type for Z3 variable: {type}")
        var = makers[type](symbol.name)
        if type is int and symbol.is_positive:
            self._target_exprs.add(var > 0)
        self.symbols[symbol] = var
        return var

    def _check_freesymbols(self, e: sympy.Basic) -> None:
        for symbol in e.free_symbols:
            if not isinstance(symbol, sympy.Symbol):
                raise AssertionError(f"Expected sympy.Symbol, got {type(symbol)}")
            self.z3var(symbol)

    def to_z3_boolean_expr(self, e: sympy.Basic) -> z3.BoolRef:
        """Translate a SymPy condition; AssertionError when it is not boolean."""
        term = SympyToZ3(self).run(e)
        if not isinstance(term, z3.BoolRef):
            raise AssertionError(f"expected boolean expression. Got: {term}")
        return term

    def add_source_expr(self, e: z3.BoolRef) -> None:
        """Add a source guard (already a z3 term)."""
        if e not in self._source_exprs:
            log.debug("add source guard: %s", z3str(e))
        self._source_exprs.add(e)

    def add_target_expr(self, e: sympy.logic.boolalg.Boolean) -> None:
        """Add a target guard, a SymPy condition over symbols that have variables."""
        self._check_freesymbols(e)
        term = self.to_z3_boolean_expr(e)
        if e not in self._target_exprs:
            log.debug("add target guard: %s", z3str(term))
        self._target_exprs.add(term)

    def add_assertion(self, e: z3.BoolRef | sympy.Basic) -> None:
        """Add a fact both sides may assume (a z3 term or a SymPy condition)."""
        if isinstance(e, sympy.Basic):
            self._check_freesymbols(e)
            e = self.to_z3_boolean_expr(e)
        if not isinstance(e, z3.BoolRef):
            raise AssertionError(f"Expected z3.BoolRef, got {type(e)}")
        if e not in self._assertions:
            log.debug("add assertion: %s", z3str(e))
        self._assertions.add(e)

    def validate(self) -> None:
        """Raise :class:`ValidationException` when the target guards do not imply the source
        guards under the assertions. Returns quietly when either side is empty, when the
        implication holds, or when z3 gives up (``unknown``, logged as a warning)."""
        if not self._source_exprs or not self._target_exprs:
            return None
        # Non-linear real arithmetic suits guard expressions (integer and real terms mixed,
        # no quantifiers).
        solver = z3.SolverFor("QF_NRA")
        solver.set(timeout=translation_validation_timeout())
        solver.add(*self._assertions)
        solver.add(z3.Not(z3.And(*self._source_exprs)))
        solver.add(*self._target_exprs)
        log.debug("translation validation: start")
        verdict = solver.check()
        if verdict == z3.sat:
            model = solver.model()
            failed = [e for e in self._source_exprs if not model.evaluate(e)]
            raise ValidationException(model, self._assertions, self._target_exprs, failed)
        if verdict == z3.unknown:
            log.warning("translation validation: could not validate: got z3.unknown")
        elif verdict != z3.unsat:
            raise AssertionError(f"Expected z3.unsat, got {verdict}")
        else:
            log.debug("translation validation: success")
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
        self,
        validation_exc: ValidationException,
        expr: sympy.Basic,
        failed_action: str,
        traced_node: torch.fx.Node,
    ) -> None:
        self.msg = f"translation validation failed when {failed_action}: {expr}"
        self.details = (
            "Failure occurred while running node:\n"
            f"    {traced_node.format_node()}\n\n{validation_exc.details}"
        )

    def __str__(self) -> str:
        return f"{self.msg}\n\n{self.details}"


# Keys torch's shape environment uses in guard-graph node metadata.
_EVENT_KEY = "shapeenv_event"
_TRACED_NODE_KEY = "current_node"


def _rebind(shape_env: Any, fake: Any) -> Any:
    """``fake`` with every symbolic size re-created in ``shape_env`` (so a replayed
    environment is not simplified with facts learned later)."""
    if isinstance(fake, int):
        return fake
    if isinstance(fake, torch.SymInt):
        return torch.SymInt(fake.node.with_shape_env(shape_env))
    if isinstance(fake, torch.SymFloat):
        return torch.SymFloat(fake.node.with_shape_env(shape_env))
    return type(fake)(
        tuple(_rebind(shape_env, s) for s in fake.size()),
        tuple(_rebind(shape_env, s) for s in fake.stride()),
        _rebind(shape_env, fake.storage_offset()),
        fake.is_nested,
    )


def _guard_failure(shape_env: Any, tracked_fakes: Any) -> ValidationException | None:
    if tracked_fakes is None:
        raise AssertionError("tracked_fakes is None")
    try:
        shape_env.produce_guards(
            [_rebind(shape_env, t.fake) for t in tracked_fakes],
            [t.source for t in tracked_fakes],
            input_contexts=[t.symbolic_context for t in tracked_fakes],
        )
    except ValidationException as failure:
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
    if not isinstance(found, ValidationException):
        raise AssertionError("Expected ValidationException at bisect result")

    node = asserts[low]
    event = events[node.meta[_EVENT_KEY]]
    if event.is_evaluate_expr():
        action = "evaluating"
    elif event.is_defer_runtime_assert():
        action = "adding runtime assert"
    else:
        raise AssertionError(f"unexpected event type: {event}")
    if event.args is None:
        raise AssertionError("event.args is None")
    if len(event.args) < 2:
        raise AssertionError(
            f"bisecting expects {event.name} to have at least 2 positional arguments. "
            f"Got: {len(event.args)}"
        )
    if not isinstance(event.args[1], sympy.Basic):
        raise AssertionError(
            f"bisecting expects {event.name} to have a SymPy expression as its second "
            f"argument. Got: {type(event.args[1])}"
        )
    raise BisectValidationException(
        found, expr=event.args[1], failed_action=action, traced_node=node.meta[_TRACED_NODE_KEY]
    )
