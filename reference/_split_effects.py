"""Memory effects for :mod:`reference.split_module`: which memory each node reads and writes,
and the order between partitions that keeps every in-place write where it is in the graph.

A partition runs all of its nodes at once, so the parent's order of partitions decides when
an in-place op runs relative to the other partitions' reads of the same memory. The data flow
alone does not fix that order: ``b = softmax(a)`` and ``a.relu_()`` both read ``a`` and
neither reads the other's result. This module finds, for each write, the accesses of the same
memory (through any alias: a view, an element of a tuple holding it, the result of the
in-place op itself) in other partitions, and turns each into an edge "this partition runs
before that one" following graph order.

Memory is tracked by *roots*: every value gets a root of its own, and a value that may share
memory with an input (a view, a reshape, anything whose result can be the input itself)
inherits that input's roots as well. Inputs and attributes are assumed not to share memory
with each other, except attributes backed by one storage (tied weights).

Where an op's effects are unknown the analysis assumes the worst: a call of a function or
module that is not torch's own may write and alias every tensor it is given.
"""

from __future__ import annotations

import builtins
import inspect
import operator
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from functools import cache
from typing import Any, NamedTuple

import torch
from torch.fx.node import Node, map_arg

from reference._split_regions import fetch_attr, is_state_call

__all__ = ["Effect", "effect_of", "partition_order_edges"]

# Kinds of access. A metadata look (creating a view, asking a size) does not read the values,
# so it only conflicts with writes that change shape or strides.
READ, LOOK, WRITE, RESHAPE = "read", "look", "write", "reshape"

# In-place ops that change a tensor's sizes, strides or storage rather than (only) its values:
# a view made before them differs from one made after.
_METADATA_WRITES = frozenset({
    "t_", "transpose_", "swapdims_", "swapaxes_", "squeeze_", "unsqueeze_", "resize_",
    "resize_as_", "as_strided_", "set_", "detach_", "rename_", "share_memory_",
})

# Functions and methods whose schema does not say so but whose result can be an input itself
# (dropout outside training, a cast to the dtype a tensor already has, ...).
_PASS_THROUGH = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout", "alpha_dropout",
    "feature_alpha_dropout", "type_as", "type", "float", "double", "half", "bfloat16", "int",
    "long", "short", "char", "byte", "bool", "cfloat", "cdouble", "to_dense", "atleast_1d",
    "atleast_2d", "atleast_3d", "broadcast_tensors", "meshgrid", "sum_to_size", "einsum",
    "cartesian_prod", "as_subclass", "storage", "untyped_storage", "data", "identity",
})

# Composite ops that are always views (never copy); together with every aten op that has a
# ``<name>_copy`` twin (the functional variants exist exactly for the view ops).
_ALWAYS_VIEWS = frozenset({
    "chunk", "tensor_split", "dsplit", "hsplit", "vsplit", "swapaxes", "swapdims", "movedim",
    "moveaxis", "view_as", "expand_as", "broadcast_to", "adjoint", "mT", "mH", "numpy_T",
    "matrix_H", "real", "imag", "unflatten", "positive", "conj",
})

# Tensor methods that answer with metadata and never read values.
_METADATA_QUERIES = frozenset({
    "size", "dim", "ndimension", "numel", "nelement", "stride", "storage_offset",
    "is_contiguous", "element_size", "is_floating_point", "is_complex", "get_device",
    "data_ptr", "is_set_to", "has_names",
})

_AUGMENTED = frozenset({
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
    operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift,
    operator.irshift, operator.imatmul, operator.iconcat,
})

# Batch-norm style functions write their running statistics while training.
_RUNNING_STATS = {"batch_norm": ("running_mean", "running_var"),
                  "instance_norm": ("running_mean", "running_var")}

# torch.nn modules whose result can be their input itself.
_PASS_THROUGH_MODULES: tuple[type, ...] = (
    torch.nn.Identity, torch.nn.Flatten, torch.nn.Unflatten, torch.nn.modules.dropout._DropoutNd,
)
# torch.nn containers run arbitrary children: treated like modules that are not torch's.
_CONTAINERS: tuple[type, ...] = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


class Effect(NamedTuple):
    """What one node does to memory.

    ``written`` are the argument values whose memory it writes (``reshapes`` when the write
    may change metadata too), ``aliased`` the argument values its result may share memory
    with, ``looks`` whether it reads only metadata of its arguments, and ``state_reads`` /
    ``state_writes`` the storages of a called module's own parameters and buffers.
    """

    written: tuple[Node, ...] = ()
    reshapes: bool = False
    aliased: tuple[Node, ...] = ()
    looks: bool = False
    state_reads: tuple[Hashable, ...] = ()
    state_writes: tuple[Hashable, ...] = ()


def storage_key(value: Any) -> Hashable:
    """A key equal for tensors backed by one storage (tied weights, views of a buffer)."""
    if isinstance(value, torch.Tensor):
        try:
            pointer = value.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            pointer = 0
        if pointer:
            return ("storage", str(value.device), pointer)
    return ("object", id(value))


@cache
def _aten_schemas(name: str) -> tuple[Any, ...]:
    try:
        return tuple(torch._C._jit_get_schemas_for_operator(f"aten::{name}"))
    except RuntimeError:
        return ()


@cache
def _has_view_twin(name: str) -> bool:
    return bool(_aten_schemas(f"{name}_copy"))


def _writes_any(schema: Any) -> bool:
    return any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)


def _schema_slots(schemas: Iterable[Any], wanted: Callable[[Any], bool]) -> set[int | str]:
    """Positions and names of the schema arguments ``wanted`` selects, over every overload."""
    slots: set[int | str] = set()
    for schema in schemas:
        for index, argument in enumerate(schema.arguments):
            if wanted(argument):
                slots.add(argument.name)
                if not argument.kwarg_only:
                    slots.add(index)
    return slots


def _values_at(node: Node, slots: set[int | str]) -> tuple[Node, ...]:
    """The graph values passed at ``slots`` (positions and keyword names) of ``node``'s call."""
    picked: list[Any] = [a for i, a in enumerate(node.args) if i in slots]
    picked += [v for k, v in node.kwargs.items() if k in slots]
    found: dict[Node, None] = {}
    map_arg(picked, lambda n: found.setdefault(n))
    return tuple(found)


def _inputs(node: Node) -> tuple[Node, ...]:
    return tuple(node.all_input_nodes)


def _is_torch_callable(target: Any) -> bool:
    owner = getattr(target, "__objclass__", None)
    if owner is not None and issubclass(owner, torch._C.TensorBase):
        return True
    return (getattr(target, "__module__", None) or "").startswith("torch")


def _inplace_requested(node: Node, target: Any) -> bool:
    flag = node.kwargs.get("inplace")
    if flag is None and node.args:
        try:
            flag = inspect.signature(target).bind_partial(*node.args).arguments.get("inplace")
        except (TypeError, ValueError):
            flag = None
    # a flag computed in the graph is unknown until run time: assume it is set
    return flag is True or isinstance(flag, Node)


def _named_effect(node: Node, name: str, target: Any = None) -> Effect:
    """Effects of a torch function or Tensor method known by ``name``."""
    schemas = _aten_schemas(name)
    written: tuple[Node, ...] = ()
    reshapes = False
    if name.endswith("_") and not name.startswith("__"):
        slots = _schema_slots(schemas, lambda a: a.alias_info is not None and a.alias_info.is_write)
        written = _values_at(node, slots) if slots else _inputs(node)
        reshapes = name in _METADATA_WRITES or not slots
    elif target is not None and _inplace_requested(node, target):
        written = _inputs(node)
    if "out" in node.kwargs:
        written += _values_at(node, {"out"})
    stats = _RUNNING_STATS.get(name)
    if stats is not None and node.kwargs.get("training", node.kwargs.get("use_input_stats")) is not False:
        stat_slots: set[int | str] = set(stats)
        try:
            parameters = list(inspect.signature(target).parameters)
            stat_slots |= {parameters.index(s) for s in stats if s in parameters}
        except (TypeError, ValueError):
            # builtins have no Python signature; their schema names the positions
            stat_slots |= _schema_slots(schemas, lambda a: a.name in stats)
        written += _values_at(node, stat_slots)
    if written:
        # the in-place ops and out= calls return (views of) what they wrote
        return Effect(written=written, reshapes=reshapes, aliased=written)
    if name in _METADATA_QUERIES:
        return Effect(looks=True)
    if name in _PASS_THROUGH:
        return Effect(aliased=_inputs(node))
    functional = [s for s in schemas if not _writes_any(s)]
    if any(r.alias_info is not None for s in functional for r in s.returns):
        slots = _schema_slots(functional, lambda a: a.alias_info is not None)
        aliased = _values_at(node, slots) if slots else _inputs(node)
        return Effect(aliased=aliased, looks=name in _ALWAYS_VIEWS or _has_view_twin(name))
    return Effect()


def _module_effect(node: Node, root: torch.nn.Module) -> Effect:
    try:
        module = fetch_attr(root, str(node.target))
    except AttributeError:
        return Effect(written=_inputs(node), reshapes=True, aliased=_inputs(node))
    state = tuple(dict.fromkeys(storage_key(t) for t in (*module.parameters(), *module.buffers())))
    buffers = tuple(dict.fromkeys(storage_key(t) for t in module.buffers()))
    own = type(module).__module__.startswith("torch.nn.modules") and not isinstance(module, _CONTAINERS)
    if not own:
        # an unknown module may do anything to what it is given and to its own state
        return Effect(written=_inputs(node), reshapes=True, aliased=_inputs(node),
                      state_reads=state, state_writes=state)
    # a module in training mode may update its buffers (running statistics)
    written_state = buffers if module.training else ()
    if getattr(module, "inplace", False) is True:
        return Effect(written=_inputs(node), aliased=_inputs(node), state_reads=state, state_writes=written_state)
    aliased = _inputs(node) if isinstance(module, _PASS_THROUGH_MODULES) else ()
    return Effect(aliased=aliased, state_reads=state, state_writes=written_state)


def effect_of(node: Node, root: torch.nn.Module) -> Effect:
    """What ``node`` (a call in a graph of ``root``) may do to memory; the worst case where
    the op is unknown."""
    if node.op == "call_module":
        return _module_effect(node, root)
    if node.op == "call_method":
        return _named_effect(node, str(node.target))
    if node.op != "call_function":
        return Effect()
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return _schema_effect(node, (target._schema,))
    if isinstance(target, torch._ops.OpOverloadPacket):
        return _schema_effect(node, tuple(getattr(target, o)._schema for o in target.overloads()))
    if target is operator.getitem:
        # an element of a container, or an index of a tensor: a view unless the index is
        # itself a graph value (advanced indexing reads the values)
        container = _values_at(node, {0})
        return Effect(aliased=container, looks=not _values_at(node, {1}))
    if target is operator.setitem or target in _AUGMENTED:
        written = _values_at(node, {0})
        return Effect(written=written, aliased=written)
    if target is builtins.getattr:
        return Effect(aliased=_values_at(node, {0}), looks=True)
    if target in (builtins.len, builtins.isinstance):
        return Effect(looks=True)
    module_name = getattr(target, "__module__", None) or ""
    if module_name in ("_operator", "operator", "math", "builtins"):
        return Effect()
    if isinstance(target, torch._ops.HigherOrderOperator):
        return Effect(aliased=_inputs(node))
    if _is_torch_callable(target):
        return _named_effect(node, getattr(target, "__name__", ""), target)
    # a function the analysis cannot see into (a wrapped user function, say)
    return Effect(written=_inputs(node), reshapes=True, aliased=_inputs(node))


def _schema_effect(node: Node, schemas: tuple[Any, ...]) -> Effect:
    slots = _schema_slots(schemas, lambda a: a.alias_info is not None and a.alias_info.is_write)
    if slots:
        written = _values_at(node, slots)
        name = schemas[0].name.split("::")[-1]
        return Effect(written=written, reshapes=name in _METADATA_WRITES, aliased=written)
    if any(r.alias_info is not None for s in schemas for r in s.returns):
        aliased = _values_at(node, _schema_slots(schemas, lambda a: a.alias_info is not None))
        name = schemas[0].name.split("::")[-1]
        return Effect(aliased=aliased or _inputs(node), looks=name in _ALWAYS_VIEWS or _has_view_twin(name))
    return Effect()


def _conflict(first: str, second: str) -> bool:
    """Whether two accesses of the same memory must keep their order."""
    if RESHAPE in (first, second):
        return True
    if WRITE in (first, second):
        return LOOK not in (first, second)
    return False


class Access(NamedTuple):
    position: int
    node: Node
    kind: str


def accesses(nodes: list[Node], root: torch.nn.Module) -> dict[Hashable, list[Access]]:
    """Every access of memory by a partitioned call, per root, in graph order.

    Args:
        nodes: the graph's nodes in order.
        root: the module the graph belongs to (its attributes and submodules).

    Returns:
        root key -> accesses (position in ``nodes``, node, kind) of that memory.
    """
    roots: dict[Node, frozenset[Hashable]] = {}
    found: dict[Hashable, list[Access]] = defaultdict(list)
    for position, node in enumerate(nodes):
        own: Hashable = ("value", node.name)
        if node.op == "get_attr":
            try:
                own = storage_key(fetch_attr(root, str(node.target)))
            except AttributeError:
                pass
        if node.op in ("placeholder", "get_attr", "output") or is_state_call(node):
            roots[node] = frozenset((own,))
            continue
        effect = effect_of(node, root)
        shared: set[Hashable] = {own}
        for source in effect.aliased:
            shared |= roots.get(source, frozenset())
        roots[node] = frozenset(shared)
        kind = LOOK if effect.looks else READ
        for source in node.all_input_nodes:
            for key in roots.get(source, ()):
                found[key].append(Access(position, node, kind))
        for key in effect.state_reads:
            found[key].append(Access(position, node, READ))
        written_kind = RESHAPE if effect.reshapes else WRITE
        for source in effect.written:
            for key in roots.get(source, ()):
                found[key].append(Access(position, node, written_kind))
        for key in effect.state_writes:
            found[key].append(Access(position, node, WRITE))
    return found


def partition_order_edges(
    nodes: list[Node], owner: dict[Node, str], root: torch.nn.Module
) -> dict[tuple[str, str], tuple[Node, Node]]:
    """Pairs of partitions whose order a write fixes.

    Args:
        nodes: the graph's nodes in order.
        owner: partition name of every partitioned node (global-state calls excluded).
        root: the module the graph belongs to.

    Returns:
        ``(earlier, later)`` partition names -> the two conflicting nodes (the earlier one
        first), for every pair of partitions where one writes memory the other reads or
        writes, ``earlier`` holding the access that comes first in the graph.
    """
    edges: dict[tuple[str, str], tuple[Node, Node]] = {}
    for events in accesses(nodes, root).values():
        writes = [e for e in events if e.kind in (WRITE, RESHAPE) and e.node in owner]
        if not writes:
            continue
        for write in writes:
            for other in events:
                if other.node is write.node or other.node not in owner:
                    continue
                if owner[other.node] == owner[write.node] or not _conflict(write.kind, other.kind):
                    continue
                first, second = (other, write) if other.position < write.position else (write, other)
                edges.setdefault((owner[first.node], owner[second.node]), (first.node, second.node))
    return edges
