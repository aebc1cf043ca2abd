"""Pieces of :mod:`reference.split_module` that read a graph without building anything:
attribute lookup, symbolic-size bookkeeping and global-state regions."""

from __future__ import annotations

from typing import Any

import torch
from torch.fx.node import Node

_ENTER_AUTOCAST = torch.amp._enter_autocast
_EXIT_AUTOCAST = torch.amp._exit_autocast
_SET_GRAD = torch._C._set_grad_enabled
_STATE_CALLS = (_ENTER_AUTOCAST, _EXIT_AUTOCAST, _SET_GRAD)


def fetch_attr(module: torch.nn.Module, qualname: str) -> Any:
    value: Any = module
    for atom in qualname.split("."):
        if not hasattr(value, atom):
            raise AttributeError(f"Node target {qualname} not found!")
        value = getattr(value, atom)
    return value


def symbolic_exprs(value: Any) -> list[Any]:
    """The sympy expressions behind every symbolic int/float/bool inside ``value``."""
    found: list[Any] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            # nested ints of jagged tensors are not symbolic and name no symbol
            if item.node.is_symbolic():
                found.append(item.node.expr)
        elif isinstance(item, (tuple, list)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, torch.Tensor):
            pending.extend(item.size())
            if item.layout is torch.strided:
                pending.extend(item.stride())
                pending.append(item.storage_offset())
    return found


def free_symbols(value: Any) -> list[Any]:
    """Free symbols of ``value``'s symbolic sizes, strides and scalars, sorted by name so the
    order of the inputs they add does not depend on set iteration."""
    symbols: set[Any] = set()
    for expr in symbolic_exprs(value):
        symbols.update(expr.free_symbols)
    return sorted(symbols, key=str)


def binding_symbol(node: Node) -> Any:
    """The symbol ``node`` binds: its example value is a symbolic int/float that is exactly
    one symbol (``s0``, ``u3``); None otherwise."""
    value = node.meta.get("example_value")
    if isinstance(value, (torch.SymInt, torch.SymFloat)):
        expr = value.node.expr
        if getattr(expr, "is_Symbol", False):
            return expr
    return None


def is_state_call(node: Node) -> bool:
    return node.op == "call_function" and any(node.target is f for f in _STATE_CALLS)


def _check_state_call(node: Node) -> None:
    """Reject region calls whose arguments cannot be replayed in another partition."""
    if node.target is _SET_GRAD:
        if len(node.args) != 1 or not isinstance(node.args[0], bool):
            raise AssertionError(
                f"{node.name}: _set_grad_enabled must have exactly one constant bool argument, "
                f"got {node.args!r}"
            )
    elif node.target is _ENTER_AUTOCAST:
        if any(isinstance(a, Node) for a in node.args):
            raise AssertionError(f"{node.name}: autocast arguments must be constants, not graph values")
    elif len(node.args) != 1:
        raise AssertionError(f"{node.name}: _exit_autocast takes the enter node only, got {node.args!r}")


class Regions:
    """The partitions each global-state region touches.

    A grad-mode region runs from a ``_set_grad_enabled`` node up to (not including) the next
    one; an autocast region from an ``_enter_autocast`` through its ``_exit_autocast``. For
    each, the sorted ids of the partitions of the nodes in that span are kept: ``grad`` and
    ``autocast`` map the region's first node to them, ``exits`` pairs enters with exits.

    Args:
        compute: the partitioned nodes, in graph order.
        pid_of: each node's partition id.
    """

    def __init__(self, compute: list[Node], pid_of: dict[Node, Any]) -> None:
        state_calls = [(i, n) for i, n in enumerate(compute) if is_state_call(n)]
        for _, node in state_calls:
            _check_state_call(node)
        ids = [pid_of[n] for n in compute]

        def span(first: int, last: int) -> list[Any]:
            return sorted(set(ids[first : last + 1]))

        grad_starts = [i for i, n in state_calls if n.target is _SET_GRAD]
        ends = [*grad_starts[1:], len(compute)]
        self.grad = {compute[i]: span(i, end - 1) for i, end in zip(grad_starts, ends)}

        opened: dict[Node, int] = {}
        self.exits: dict[Node, Node | None] = {}
        spans: dict[Node, tuple[int, int]] = {}
        for i, node in state_calls:
            if node.target is _ENTER_AUTOCAST:
                opened[node] = i
                self.exits[node] = None
            elif node.target is _EXIT_AUTOCAST:
                enter = node.args[0]
                # an exit of an unknown or already closed region is malformed: KeyError
                spans[enter] = (opened.pop(enter), i)  # type: ignore[call-overload]
                self.exits[enter] = node  # type: ignore[index]
        if opened:
            raise AssertionError(f"autocast must exit: {', '.join(n.name for n in opened)} never exits")
        self.autocast = {enter: span(*spans[enter]) for enter in self.exits}

    def __bool__(self) -> bool:
        return bool(self.autocast) or bool(self.grad)

    def entries(self) -> list[tuple[Node, list[Any]]]:
        """Region starts in the order their state is re-established: autocast, then grad."""
        return [*self.autocast.items(), *self.grad.items()]


def check_monotonic(compute: list[Node], pid_of: dict[Node, Any]) -> None:
    # A region re-entered at the start of each partition is only right if the partitions run
    # in graph order, so ids must never go back.
    highest: Any = None
    for node in compute:
        pid = pid_of[node]
        if highest is not None and highest > pid:
            raise AssertionError(
                "autocast or set_grad_enabled require monotonically increasing "
                f"partitions: highest: {highest}, this node's: {pid}"
            )
        highest = pid
