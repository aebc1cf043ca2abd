"""What a traced case does to memory, observed by running it: which nodes write in place and
to which storage, which nodes read it, and the order between groups of nodes (partitions)
that such a write fixes.

The traits that excuse an in-place divergence (``split-module-inplace-order``,
``partition-inplace-order``, ``merge-matmul-mutation-between``) need to know which memory
each node writes and reads. They must not take that from ``reference/``: the reference's
own model of effects is what the harness checks, and a bug in it would then widen or narrow
what the registry excuses. Nor do they model effects from op names at all: they run a private
copy of the traced graph on copies of the case's inputs and *watch* it.

* A node **writes** a tensor when the tensor's version counter moves while the node runs
  (autograd bumps it on every in-place op, through any view, and for ``out=`` and
  ``inplace=True`` calls); a write **reshapes** when the tensor's sizes, strides or offset
  changed too (``t_``, ``unsqueeze_``, ``resize_``).
* Memory is a *storage*: two values share memory when their tensors share a storage (a view,
  the result of an in-place op, an element of a tuple, a tied weight). Every value is kept
  alive for the run, so a freed storage's address is never handed to a new tensor.
* A node **reads** the storages of the tensors it is given and, for a module call, those of
  the module's parameters and buffers. It only **looks** (reads metadata, not values) when it
  is a metadata query (``x.size()``, ``x.shape``, ``len``) or a torch op whose every tensor
  result is memory it was given (a view, ``getitem`` of a tuple, dropout in eval mode):
  making a view does not read the values a later write changes.

What is observed holds for the case's own inputs, which is exactly where a divergence was
seen; an op that sometimes copies and sometimes aliases (``reshape``, ``contiguous``) is
judged by what it did there.
"""

from __future__ import annotations

import builtins
import copy
from collections import defaultdict
from collections.abc import Hashable, Iterator
from typing import Any, NamedTuple

import torch
import torch.fx
from torch.fx.node import Node

from conform.adapters import clone_values
from conform.execute import seed_everything
from conform.traits._values import CallInterpreter
from generators.sources import Built

__all__ = ["Access", "LOOK", "READ", "RESHAPE", "WRITE", "Effects", "observe", "order_edges"]

# Kinds of access, weakest first: a node touching one storage several ways keeps the strongest.
LOOK, READ, WRITE, RESHAPE = "look", "read", "write", "reshape"
_STRENGTH = {LOOK: 0, READ: 1, WRITE: 2, RESHAPE: 3}

# Tensor methods and builtins that answer from metadata only.
_QUERY_METHODS = frozenset({
    "size", "dim", "ndimension", "numel", "nelement", "stride", "storage_offset", "is_contiguous",
    "element_size", "is_floating_point", "is_complex", "get_device", "data_ptr", "has_names",
})
_QUERY_FUNCTIONS = (builtins.getattr, builtins.len, builtins.isinstance, torch.numel)

# torch.nn containers run whatever children they hold: their calls are opaque like a user's.
_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


class Access(NamedTuple):
    """One node's access of one storage: its position in graph order, the node, the kind."""

    position: int
    node: Node
    kind: str


class Effects(NamedTuple):
    """The accesses of every storage a run touched, in graph order (``storage -> accesses``)."""

    accesses: dict[Hashable, list[Access]]

    def writers(self) -> dict[Hashable, list[Node]]:
        """Storage -> the nodes that wrote it in place, in graph order."""
        return {
            storage: [a.node for a in events if a.kind in (WRITE, RESHAPE)]
            for storage, events in self.accesses.items()
            if any(a.kind in (WRITE, RESHAPE) for a in events)
        }


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    for leaf in torch.utils._pytree.tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            yield leaf


def _storage(tensor: torch.Tensor) -> Hashable | None:
    """A key shared by tensors backed by one storage; None for memory-less tensors (empty,
    meta, sparse), which no write can reach."""
    try:
        pointer = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return (str(tensor.device), pointer) if pointer else None


def _layout(tensor: torch.Tensor) -> tuple[Any, ...]:
    return tuple(tensor.shape), tensor.stride(), tensor.storage_offset(), _storage(tensor)


def _version(tensor: torch.Tensor) -> int | None:
    try:
        return tensor._version
    except (RuntimeError, AttributeError):  # inference tensors carry no version counter
        return None


def _is_torch_own(node: Node, root: torch.nn.Module) -> bool:
    """Whether ``node`` calls torch itself (whose results the run can be trusted to show
    sharing for) rather than a user's function or module (which may read anything)."""
    if node.op == "call_method":
        return True
    if node.op == "call_module":
        module = root.get_submodule(str(node.target))
        return type(module).__module__.startswith("torch.nn.") and not isinstance(module, _CONTAINERS)
    target = node.target
    if isinstance(target, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        return True
    owner = getattr(target, "__module__", None) or ""
    return owner.startswith("torch") or owner in ("_operator", "operator", "builtins")


def _is_query(node: Node) -> bool:
    if node.op == "call_method":
        return str(node.target) in _QUERY_METHODS
    return node.op == "call_function" and any(node.target is f for f in _QUERY_FUNCTIONS)


class _Observer(CallInterpreter):
    """Runs the graph, noting every node's accesses of storages."""

    def __init__(self, module: torch.fx.GraphModule, kwargs: dict[str, Any]) -> None:
        super().__init__(module, kwargs)
        self.accesses: dict[Hashable, list[Access]] = defaultdict(list)
        # every tensor the run has seen, by id: kept alive so no storage address is reused,
        # and watched for writes by any later node
        self._seen: dict[int, torch.Tensor] = {}
        self._position = 0

    def _keep(self, value: Any) -> None:
        for tensor in _tensors(value):
            self._seen.setdefault(id(tensor), tensor)

    def run_node(self, n: Node) -> Any:
        position, self._position = self._position, self._position + 1
        if n.op in ("placeholder", "get_attr"):
            result = super().run_node(n)
            self._keep(result)
            return result
        with self._set_current_node(n):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
        given = list(_tensors((args, kwargs)))
        state: list[torch.Tensor] = []
        if n.op == "call_module":
            module = self.module.get_submodule(str(n.target))
            state = [*module.parameters(), *module.buffers()]
        self._keep((given, state))
        before = {key: (_version(t), _layout(t)) for key, t in self._seen.items()}
        with self._set_current_node(n):
            result = getattr(self, n.op)(n.target, args, kwargs)
        touched: dict[Hashable, str] = {}

        def touch(tensor: torch.Tensor, kind: str) -> None:
            storage = _storage(tensor)
            if storage is not None and (storage not in touched or _STRENGTH[kind] > _STRENGTH[touched[storage]]):
                touched[storage] = kind

        for key, (version, layout) in before.items():
            tensor = self._seen[key]
            if version is not None and _version(tensor) != version:
                touch(tensor, RESHAPE if _layout(tensor) != layout else WRITE)
        kind = READ
        if _is_query(n):
            kind = LOOK
        elif n.op != "output" and _is_torch_own(n, self.module):
            mine = {_storage(t) for t in given} - {None}
            made = [_storage(t) for t in _tensors(result)]
            if made and all(s in mine for s in made):
                kind = LOOK  # a view or the input itself: no values were read
        for tensor in (*given, *state):
            touch(tensor, kind)
        for storage, how in touched.items():
            self.accesses[storage].append(Access(position, n, how))
        self._keep(result)
        return result


def observe(graph_module: torch.fx.GraphModule, built: Built) -> Effects:
    """Run a private copy of ``graph_module`` on copies of the case's call and note which
    storage every node reads, looks at or writes.

    Args:
        graph_module: the traced case (left as it is: the run uses a deep copy).
        built: the case, whose ``args`` and ``kwargs`` are copied for the run.

    Returns:
        The accesses per storage, with nodes of ``graph_module`` itself (not of the copy).
    """
    private = copy.deepcopy(graph_module)
    args, kwargs = clone_values((tuple(built.args), dict(built.kwargs)))
    observer = _Observer(private, kwargs)
    with torch.random.fork_rng(devices=[]), torch.set_grad_enabled(torch.is_grad_enabled()):
        seed_everything(0)
        observer.run(*args)
    original = dict(zip(private.graph.nodes, graph_module.graph.nodes))
    return Effects({
        storage: [Access(a.position, original[a.node], a.kind) for a in events]
        for storage, events in observer.accesses.items()
    })


def _conflict(first: str, second: str) -> bool:
    """Whether two accesses of one storage, one of them a write, must keep their order: a
    write orders against reads and writes; a look only against a write that reshapes."""
    if RESHAPE in (first, second):
        return True
    return LOOK not in (first, second)


def order_edges(effects: Effects, owner: dict[Node, Any]) -> set[tuple[Any, Any]]:
    """The pairs of groups whose order an in-place write fixes.

    Args:
        effects: what :func:`observe` saw.
        owner: the group (partition id) of each node that belongs to one; nodes left out
            (inputs, attributes, the output, global-state calls) order nothing.

    Returns:
        ``(earlier, later)`` for every two groups where one writes a storage the other reads
        or writes, ``earlier`` holding the access that comes first in the graph.
    """
    edges: set[tuple[Any, Any]] = set()
    for events in effects.accesses.values():
        mine = [a for a in events if a.node in owner]
        for write in (a for a in mine if a.kind in (WRITE, RESHAPE)):
            for other in mine:
                if owner[other.node] == owner[write.node] or not _conflict(write.kind, other.kind):
                    continue
                first, second = sorted((write, other), key=lambda a: a.position)
                edges.add((owner[first.node], owner[second.node]))
    return edges
