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


class Regions:
    """The partitions each global-state region touches.

    ``autocast`` maps an ``_enter_autocast`` node to the sorted partition ids of every node
    from it to its matching exit (inclusive); ``grad`` maps a ``_set_grad_enabled`` node to the
    ids of every node from it up to the next ``_set_grad_enabled``. ``exits`` pairs each enter
    with its exit.
    """

    def __init__(self, compute: list[Node], pid_of: dict[Node, Any]) -> None:
        autocast: dict[Node, set[Any]] = {}
        grad: dict[Node, set[Any]] = {}
        self.exits: dict[Node, Node | None] = {}
        open_autocasts: dict[Node, None] = {}
        current_grad: Node | None = None
        for node in compute:
            pid = pid_of[node]
            if node.op == "call_function":
                if node.target is _SET_GRAD:
                    if len(node.args) != 1:
                        raise AssertionError(
                            f"_set_grad_enabled takes one argument, {node.name} has {len(node.args)}"
                        )
                    if not isinstance(node.args[0], bool):
                        raise AssertionError(
                            f"_set_grad_enabled needs a constant bool, {node.name} has "
                            f"{type(node.args[0]).__name__}"
                        )
                    current_grad = node
                    grad[node] = set()
                elif node.target is _ENTER_AUTOCAST:
                    if any(isinstance(a, Node) for a in node.args):
                        raise AssertionError(
                            f"autocast arguments must be constants, not graph values ({node.name})"
                        )
                    autocast[node] = set()
                    self.exits[node] = None
                    open_autocasts[node] = None
                elif node.target is _EXIT_AUTOCAST:
                    if len(node.args) != 1:
                        raise AssertionError(
                            f"_exit_autocast takes one argument, {node.name} has {len(node.args)}"
                        )
                    enter = node.args[0]
                    autocast[enter].add(pid)  # type: ignore[index]
                    del open_autocasts[enter]  # type: ignore[arg-type]
                    self.exits[enter] = node  # type: ignore[index]
            if current_grad is not None:
                grad[current_grad].add(pid)
            for enter in open_autocasts:
                autocast[enter].add(pid)
        if any(exit_node is None for exit_node in self.exits.values()):
            raise AssertionError("autocast must exit: an _enter_autocast has no matching exit")
        self.autocast = {k: sorted(v) for k, v in autocast.items()}
        self.grad = {k: sorted(v) for k, v in grad.items()}

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
