"""The planner that turns raw genes into spec nodes, and the base class of op kinds.

Every random module is *planned*: a list of genes (small integer tuples drawn by hypothesis)
is read one gene at a time, and each gene asks one op kind to add a node to the spec. The
planner knows the shape, dtype and a magnitude bound of every value so far, so each kind
can choose operands and attributes that are valid by construction and keep values finite.

Because any gene list plans to *some* valid spec, hypothesis may delete genes or lower
their integers freely while shrinking and every intermediate spec stays valid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

#: Magnitude bound above which an op is not planned on a float value: conservative interval
#: arithmetic keeps every real value far below the float32/bfloat16 overflow threshold.
FLOAT_LIMIT = 1.0e4
#: The same for integer values (well inside int64).
INT_LIMIT = float(1 << 24)
#: The largest tensor a plan may create, in elements; keeps eager and traced runs fast.
MAX_ELEMENTS = 4096
#: Largest size of a dimension created by the planner.
MAX_DIM = 6

FLOAT_DTYPES = ("float32", "float64", "bfloat16")
INT_DTYPES = ("int64",)
GENE_WIDTH = 8
GENE_MAX = 255


class PlanError(Exception):
    """A spec is malformed or names an unknown op kind."""


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def broadcast(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """The broadcast shape of ``a`` and ``b``, or None when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def broadcasts_to(small: Sequence[int], big: Sequence[int]) -> bool:
    """True when ``small`` broadcasts to exactly ``big`` (what in-place ops require)."""
    return broadcast(small, big) == tuple(big) and len(small) <= len(big)


@dataclasses.dataclass
class Value:
    """A value of the forward under construction.

    ``dtype`` is a dtype name (``"float32"``, ``"int64"``, ``"bool"``) or ``"tuple"``;
    ``bound`` bounds ``|element|``; ``storage`` names the memory the tensor owns or views
    (None for inputs, parameters, constants and overlapping views, which must never be
    written in place); ``nonneg`` marks integer values usable as indices; ``traced`` is False
    for values computed from no traced input, which tracing folds into constants; ``views``
    names the memory a view reads when its own ``storage`` is None (a piece of a split, an
    overlapping view), so an in-place write into that memory never takes it as an operand.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    bound: float
    storage: str | None = None
    contiguous: bool = True
    nonneg: bool = False
    arity: int = 0
    usable: bool = True
    traced: bool = True
    views: str | None = None

    @property
    def is_tensor(self) -> bool:
        return self.dtype != "tuple"


class Gene:
    """Reads a gene's integers in order; each read maps an integer in [0, 255] to a choice
    so that 0, where hypothesis shrinks to, is the simplest choice."""

    def __init__(self, ints: Sequence[int]) -> None:
        self._ints = list(ints) or [0]
        self._pos = 0

    def int(self, lo: int, hi: int) -> int:
        raw = self._ints[self._pos % len(self._ints)]
        self._pos += 1
        if hi <= lo:
            return lo
        return lo + raw % (hi - lo + 1)

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.int(0, len(options) - 1)]

    def chance(self, percent: int) -> bool:
        """True for roughly ``percent`` % of raw values; False at 0 (the shrink target)."""
        raw = self._ints[self._pos % len(self._ints)]
        self._pos += 1
        return raw > 0 and (raw * 100) // (GENE_MAX + 1) < percent


class Planner:
    """Accumulates the spec of one module while op kinds add nodes to it."""

    def __init__(self, dtype: str, training: bool, max_cost: int) -> None:
        self.dtype = dtype
        self.training = training
        self.max_cost = max_cost
        self.inputs: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.values: list[Value] = []
        self.by_name: dict[str, Value] = {}
        self.modules: list[dict[str, Any]] = []
        self.signature: dict[str, Any] = {"default": None, "flag": None, "varkw": False}
        self.stochastic = False
        self.cost = 1  # the output node
        self.consumed: set[str] = set()
        self._counter = 0

    # checkpoints ---------------------------------------------------------------------------

    def checkpoint(self) -> tuple[Any, ...]:
        """Everything a failed plan may have touched, to undo it with :meth:`rollback`."""
        return (
            len(self.inputs),
            len(self.nodes),
            len(self.values),
            len(self.modules),
            dict(self.signature),
            self.stochastic,
            self.cost,
            set(self.consumed),
            self._counter,
            [v.bound for v in self.values],
        )

    def rollback(self, cp: tuple[Any, ...]) -> None:
        n_in, n_nodes, n_values, n_mods, sig, stoch, cost, consumed, counter, bounds = cp
        for v in self.values[n_values:]:
            del self.by_name[v.name]
        del self.inputs[n_in:], self.nodes[n_nodes:], self.values[n_values:], self.modules[n_mods:]
        for v, b in zip(self.values, bounds):
            v.bound = b
        self.signature, self.stochastic, self.cost = sig, stoch, cost
        self.consumed, self._counter = consumed, counter

    # naming ------------------------------------------------------------------------------

    def fresh(self, prefix: str = "v") -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    # values ------------------------------------------------------------------------------

    def candidates(self, pred: Callable[[Value], bool] | None = None) -> list[Value]:
        return [v for v in self.values if v.usable and v.is_tensor and (pred is None or pred(v))]

    def choose(self, gene: Gene, pred: Callable[[Value], bool] | None = None) -> Value | None:
        """An existing value satisfying ``pred``; the most recent one at gene value 0."""
        found = self.candidates(pred)
        if not found:
            return None
        return found[-1 - gene.int(0, len(found) - 1)]

    def is_float(self, v: Value) -> bool:
        return v.dtype == self.dtype

    def float_value(self, gene: Gene, pred: Callable[[Value], bool] | None = None) -> Value | None:
        def ok(v: Value) -> bool:
            return self.is_float(v) and v.bound <= FLOAT_LIMIT and (pred is None or pred(v))

        return self.choose(gene, ok)

    def float_or_new(self, gene: Gene, pred: Callable[[Value], bool], shape: Sequence[int]) -> Value:
        """An existing float value satisfying ``pred``, else a new input of ``shape``."""
        found = self.float_value(gene, pred)
        return found if found is not None else self.new_input(shape)

    def room(self, cost: int) -> bool:
        return self.cost + cost <= self.max_cost

    def new_input(self, shape: Sequence[int], dtype: str | None = None, high: int = 0) -> Value:
        """A new forward argument: floats uniform in [-1, 1], integers in [0, high).

        Integer bounds are inclusive, so an index input of ``high`` rows has bound
        ``high - 1``."""
        dtype = dtype or self.dtype
        name = self.fresh("x")
        entry: dict[str, Any] = {"name": name, "shape": list(shape), "dtype": dtype}
        if dtype in INT_DTYPES:
            entry["high"] = max(1, high)
        self.inputs.append(entry)
        self.cost += 1
        value = Value(
            name,
            tuple(shape),
            dtype,
            bound=float(max(0, high - 1)) if dtype in INT_DTYPES else 1.0,
            nonneg=dtype in INT_DTYPES,
        )
        self._register(value)
        return value

    def new_param(self, shape: Sequence[int], scale: float = 1.0) -> Value:
        """A new ``nn.Parameter`` initialised uniform in [-scale, scale]."""
        name = self.fresh("w")
        self.cost += 1
        self.nodes.append(
            {"id": name, "op": "param", "in": [], "attrs": {"scale": scale}, "shape": list(shape), "dtype": self.dtype}
        )
        value = Value(name, tuple(shape), self.dtype, bound=scale)
        self._register(value)
        return value

    def add(
        self,
        op: str,
        ins: Sequence[Value],
        attrs: dict[str, Any],
        shape: Sequence[int],
        dtype: str,
        bound: float,
        *,
        cost: int = 1,
        view_of: Value | None = None,
        contiguous: bool | None = None,
        nonneg: bool = False,
        arity: int = 0,
        usable: bool = True,
    ) -> Value:
        """Append a node; ``view_of`` makes the result share that operand's storage.

        ``contiguous`` defaults to "every operand is contiguous": elementwise kernels keep
        the memory layout of their inputs, so a permuted operand gives a permuted result.
        """
        if contiguous is None:
            contiguous = all(v.contiguous for v in ins)
        name = self.fresh("v")
        node: dict[str, Any] = {
            "id": name,
            "op": op,
            "in": [v.name for v in ins],
            "attrs": attrs,
            "shape": list(shape) if arity == 0 else None,
            "dtype": dtype if arity == 0 else "tuple",
        }
        self.nodes.append(node)
        self.cost += cost
        self.consumed.update(v.name for v in ins)
        if view_of is not None:
            storage = view_of.storage
        else:
            storage = name if arity == 0 else None
        # Computed from constants only, the value is a trace-time constant too: the traced
        # module keeps that one tensor across calls, so it must never be written in place.
        traced = not ins or any(v.traced for v in ins)
        if not traced:
            storage = None
        value = Value(
            name,
            tuple(shape),
            dtype if arity == 0 else "tuple",
            bound=bound,
            storage=storage,
            contiguous=contiguous,
            nonneg=nonneg,
            arity=arity,
            usable=usable,
            traced=traced,
            views=(view_of.storage or view_of.views) if view_of is not None else None,
        )
        self._register(value)
        return value

    def mutate(self, target: Value, bound: float) -> None:
        """Record an in-place write: every value sharing ``target``'s memory may now hold
        values up to ``bound``."""
        for v in self.values:
            if v.storage is not None and v.storage == target.storage:
                v.bound = max(v.bound, bound)

    def register_module(self, attr: str, kind: str, signature: dict[str, Any]) -> None:
        self.modules.append({"attr": attr, "kind": kind, "sig": signature})

    def find_module(self, gene: Gene, kind: str, want: dict[str, Any], match: Sequence[str]) -> dict[str, Any] | None:
        """An existing submodule of ``kind`` whose signature agrees with ``want`` on the
        ``match`` keys, chosen about half the time so it gets a second call site."""
        same = [m for m in self.modules if m["kind"] == kind and all(m["sig"].get(k) == want[k] for k in match)]
        if same and gene.chance(50):
            return same[-1 - gene.int(0, len(same) - 1)]
        return None

    def _register(self, value: Value) -> None:
        self.values.append(value)
        self.by_name[value.name] = value

    def sinks(self) -> list[str]:
        """Tensor and tuple values nothing consumed: the module's natural outputs."""
        return [v.name for v in self.values if v.usable and v.name not in self.consumed and not v.name.startswith("x")]


class OpKind:
    """One entry of the vocabulary.

    Subclasses implement :meth:`plan` (read a gene, add nodes to the planner, return the
    main value or None when the kind does not apply) and :meth:`emit` (write the Python for
    a node of this kind). ``category`` groups kinds for include/exclude.
    """

    name: str = ""
    category: str = ""
    weight: float = 1.0
    cost: int = 1
    stochastic: bool = False
    #: False for kinds whose plan adds nodes of other kinds only (never a spec node's op).
    in_specs: bool = True

    def plan(self, p: Planner, g: Gene) -> Value | None:
        raise NotImplementedError

    def emit(self, node: dict[str, Any], w: Writer) -> None:
        raise NotImplementedError

    def fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The rules (:class:`generators.vocab.schema.Field` by attribute name) a node's
        ``attrs`` must follow; ``attrs`` is given so a kind whose attributes depend on a
        mode can pick the rules of that mode. Everything :meth:`emit` pastes into code is
        checked here first."""
        raise NotImplementedError(f"op kind {self.name!r} declares no attribute rules")

    def arity(self, attrs: dict[str, Any]) -> tuple[int, int]:
        """How many operands (``node["in"]``) a node of this kind takes, at least and at most."""
        return (1, 1)

    def state(self, node: dict[str, Any]) -> int:
        """Elements of the parameters and buffers a (checked) node creates, so a spec's
        total can be bounded before anything is allocated."""
        return 0


class Writer:
    """Collects the Python of a generated module: ``__init__`` lines, ``forward`` lines and
    helper classes (nested modules), keyed so each helper is written once."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.init: list[str] = []
        self.forward: list[str] = []
        self.helpers: dict[str, str] = {}
        # variables of a function enclosing the module class (name -> literal): the forward
        # then reads them as closure cells
        self.free: dict[str, str] = {}
        # the forward is a module-level function the class takes as its ``forward``
        self.forward_global = False
        # the forward needs its class around it (a name-mangled attribute, zero-argument
        # super()): it stays a method whatever ``forward_global`` asks
        self.class_bound = False

    @property
    def torch_dtype(self) -> str:
        return f"torch.{self.dtype}"

    def assign(self, node: dict[str, Any], expr: str) -> None:
        self.forward.append(f"{node['id']} = {expr}")

    def line(self, text: str) -> None:
        self.forward.append(text)

    def member(self, text: str) -> None:
        self.init.append(text)

    def helper(self, name: str, source: str) -> None:
        self.helpers.setdefault(name, source)


def fmt_float(x: float) -> str:
    """A float literal that round-trips (``repr``), never an integer-looking one."""
    text = repr(float(x))
    return text


def scalar_literal(x: float | int, dtype: str) -> str:
    if dtype in INT_DTYPES or dtype == "bool":
        return str(int(x))
    return fmt_float(x)
