"""Split a traced module into a parent that calls one child ``GraphModule`` per partition.

A user callback names the partition of every computing node. Each partition becomes a
``submod_<id>`` child whose placeholders are the values it needs from the caller (forward
inputs, attributes, other partitions' results) and whose output is every value another
partition or the final output reads. The parent calls the children in an order that respects
those data dependencies (or in the order partitions first appear, when asked) and unpacks
their results with ``getitem``.

In-place ops add dependencies of their own: a partition that reads memory before another
partition writes it in place runs first, and one that reads it afterwards runs later, so every
child sees the values it would see in the unsplit module (see :mod:`reference._split_effects`).
Upstream orders by data dependencies alone and can call the writer first.

Global-state calls (autocast enter/exit, ``_set_grad_enabled``) are not values: a partition
that runs inside such a region re-enters it at its start (and leaves autocast at its end), so
each child is correct on its own.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch.fx import GraphModule
from torch.fx.graph import Graph
from torch.fx.node import Node, map_arg

from reference._split_effects import partition_order_edges
from reference._split_regions import (
    Regions,
    binding_symbol,
    check_monotonic,
    fetch_attr,
    free_symbols,
    is_state_call,
)

__all__ = ["Partition", "split_module", "split_module_simple"]

# Nodes the callback is never asked about: inputs and attributes are fed to whichever
# partitions read them, and the output is rebuilt in the parent.
_UNPARTITIONED = frozenset({"placeholder", "get_attr", "output"})


class Partition:
    """One partition under construction: its nodes, the values crossing its boundary and the
    partitions it depends on.

    Args:
        name: the partition's id as a string (``"<affix>_<id>"`` with a partition affix).
    """

    def __init__(self, name: str) -> None:
        self.name: str = name
        self.submod_name = f"submod_{name}"
        # the child graph, and the original node -> child node map used while filling it
        self.graph: Graph = Graph()
        self.environment: dict[Node, Node] = {}
        # attributes the child owns: flattened module names (and module get_attrs) -> objects
        self.targets: dict[str, Any] = {}
        self.node_names: list[str] = []
        # Ordered sets (dicts with None values): node names crossing the boundary, and the
        # names of the partitions this one waits on or feeds.
        self.inputs: dict[str, None] = {}
        self.outputs: dict[str, None] = {}
        self.dependencies: dict[str, None] = {}
        self.dependents: dict[str, None] = {}

    def __repr__(self) -> str:
        fields = (
            ("name", self.name),
            ("nodes", self.node_names),
            ("inputs", self.inputs),
            ("outputs", self.outputs),
            ("partitions depended on", self.dependencies),
            ("partition dependents", self.dependents),
        )
        return ",\n ".join(f"{label}: {value}" for label, value in fields)


def _link(name: str, made_by: Partition | None, user: Partition) -> None:
    """``user`` reads the value ``name``, computed by ``made_by`` (None for inputs and
    attributes of the original module)."""
    user.inputs.setdefault(name)
    if made_by is not None:
        made_by.outputs.setdefault(name)
        made_by.dependents.setdefault(user.name)
        user.dependencies.setdefault(made_by.name)


def _record_uses(nodes: list[Node], owner: dict[Node, Partition], bindings: dict[Any, Node]) -> None:
    """Fill each partition's inputs, outputs, dependencies and dependents."""
    for node in nodes:
        if node.op == "output":
            for source in node.all_input_nodes:
                if source in owner:
                    owner[source].outputs.setdefault(source.name)
            continue
        user = owner.get(node)
        # state calls are replayed per partition rather than wired through as values
        if user is None or is_state_call(node):
            continue
        for source in node.all_input_nodes:
            made_by = owner.get(source)
            if made_by is user:
                continue
            _link(source.name, made_by, user)
            example = source.meta.get("example_value")
            if example is None or not bindings:
                continue
            # A value whose shape mentions a symbol needs the symbol in scope where it is
            # read, so whatever binds the symbol is passed along too (unless it is local).
            for symbol in free_symbols(example):
                binder = bindings.get(symbol)
                if binder is not None and owner.get(binder) is not user:
                    _link(binder.name, owner.get(binder), user)


def _topological_order(
    partitions: dict[str, Partition],
    writes: dict[tuple[str, str], tuple[Node, Node]] | None = None,
    *,
    first_appearance: bool = False,
) -> list[str]:
    """Partition names in an order where every partition follows those it depends on.

    Without ``writes`` this is Kahn's algorithm with a stack (ready partitions are taken
    last-in first-out), the order callers of split_module get when nothing is mutated.
    ``writes`` adds the pairs an in-place op fixes; ``first_appearance`` then takes the ready
    partition that appears first in the graph instead of the last one made ready.
    """
    after: dict[str, dict[str, None]] = {name: dict(p.dependents) for name, p in partitions.items()}
    for earlier, later in writes or ():
        after[earlier].setdefault(later)
    waiting = dict.fromkeys(partitions, 0)
    for successors in after.values():
        for name in successors:
            waiting[name] += 1
    ready = [name for name, count in waiting.items() if count == 0]
    rank = {name: index for index, name in enumerate(partitions)}
    order: list[str] = []
    while ready:
        if first_appearance:
            ready.sort(key=rank.__getitem__, reverse=True)
        name = ready.pop()
        order.append(name)
        for dependent in after[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    if len(order) != len(partitions):
        stuck = sorted(name for name in partitions if name not in set(order))
        reason = f"partitions {stuck} wait on each other"
        for (earlier, later), (first, second) in (writes or {}).items():
            if earlier in stuck and later in stuck:
                reason += (
                    f"; {first.name} (partition {earlier}) and {second.name} (partition {later}) "
                    "touch the same memory and one of them writes it in place"
                )
                break
        raise RuntimeError(f"cycle exists between partitions! ({reason})")
    return order


def _keeps_data_flow(order: list[str], partitions: dict[str, Partition]) -> bool:
    position = {name: index for index, name in enumerate(order)}
    return all(position[d] < position[name] for name in order for d in partitions[name].dependencies)


def _keeps_writes_in_place(order: list[str], writes: dict[tuple[str, str], tuple[Node, Node]]) -> bool:
    position = {name: index for index, name in enumerate(order)}
    return all(position[earlier] < position[later] for earlier, later in writes)


def _call_order(
    m: GraphModule, nodes: list[Node], partitions: dict[str, Partition], owner: dict[Node, Partition],
    keep_original_order: bool | None,
) -> list[str]:
    """The order the parent calls the children in.

    Dependency order (or first appearance with ``keep_original_order``), as long as every
    in-place write stays on the same side of every other partition's access of that memory
    as in the graph; otherwise an order that also follows those writes. Without the second
    step a partition holding ``a.relu_()`` may run before the one holding an earlier
    ``softmax(a)``, which then reads the updated values.

    Raises:
        RuntimeError: no order of the partitions satisfies both kinds of dependencies.
    """
    order = _topological_order(partitions)
    chosen = list(partitions) if keep_original_order else order
    if keep_original_order and not _keeps_data_flow(chosen, partitions):
        # a child would be called before one it reads from: building the parent fails on
        # the missing value, as it does for a first-appearance order without any writes
        return chosen
    # global-state calls are replayed in every partition of their region, not ordered
    names = {node: part.name for node, part in owner.items() if not is_state_call(node)}
    writes = partition_order_edges(nodes, names, m)
    if writes and not _keeps_writes_in_place(chosen, writes):
        chosen = _topological_order(partitions, writes, first_appearance=bool(keep_original_order))
    return chosen


def _unique_target(targets: dict[str, Any], wanted: str, value: Any) -> str:
    # Flattening "a.b_c" and "a_b.c" both give "a_b_c"; two different modules must not share
    # one attribute of the child, or one call silently runs the other module.
    name, suffix = wanted, 0
    while name in targets and targets[name] is not value:
        suffix += 1
        name = f"{wanted}_{suffix}"
    return name


def _build_partition_graphs(
    m: GraphModule,
    nodes: list[Node],
    by_name: dict[str, Node],
    partitions: dict[str, Partition],
    owner: dict[Node, Partition],
    regions: Regions,
    name_of: Callable[[Any], str],
    qualname_map: dict[str, str] | None,
    keep_original_node_name: bool | None,
    keep_original_input_name: bool,
) -> None:
    # Which region starts each partition re-establishes, in replay order.
    reentries: dict[str, list[Node]] = {name: [] for name in partitions}
    for start, ids in regions.entries():
        for pid in ids[1:]:
            reentries[name_of(pid)].append(start)

    for part in partitions.values():
        graph, env = part.graph, part.environment
        plain: list[str] = []
        modules: list[tuple[str, Any]] = []
        for name in part.inputs:
            source = by_name[name]
            if source.op == "get_attr" and isinstance(source.target, str):
                value = fetch_attr(m, source.target)
                if isinstance(value, torch.nn.Module):
                    # modules cannot be passed as arguments: the child owns them instead
                    modules.append((name, value))
                    continue
            plain.append(name)
        for index, name in enumerate(plain):
            source = by_name[name]
            ph = graph.placeholder(name if keep_original_input_name else f"arg_{index}", type_expr=source.type)
            ph.meta = source.meta.copy()
            env[source] = ph
        for start in reentries[part.name]:
            copy = graph.create_node(
                start.op, start.target, tuple(start.args), dict(start.kwargs), type_expr=start.type
            )
            copy.meta = start.meta.copy()
            env[start] = copy
        for name, value in modules:
            source = by_name[name]
            attr = graph.get_attr(source.target)  # type: ignore[arg-type]
            attr.meta = source.meta.copy()
            part.targets[source.target] = value  # type: ignore[index]
            env[source] = attr
        part.inputs = dict.fromkeys(plain)

    for node in nodes:
        part = owner.get(node)
        if part is None:
            continue
        env = part.environment
        target = node.target
        if node.op == "call_module":
            value = fetch_attr(m, node.target)  # type: ignore[arg-type]
            target = _unique_target(part.targets, node.target.replace(".", "_"), value)  # type: ignore[union-attr]
            part.targets[target] = value
            if qualname_map is not None:
                qualname_map[f"{part.submod_name}.{target}"] = node.target  # type: ignore[assignment]
        copy = part.graph.create_node(
            node.op,
            target,
            map_arg(node.args, env.__getitem__),  # type: ignore[arg-type]
            map_arg(node.kwargs, env.__getitem__),  # type: ignore[arg-type]
            name=node.name if keep_original_node_name else None,
            type_expr=node.type,
        )
        copy.meta = node.meta.copy()
        env[node] = copy

    # Leave autocast at the end of every partition but the region's last, innermost first.
    for enter in reversed(regions.autocast):
        exit_node = regions.exits[enter]
        assert exit_node is not None
        for pid in regions.autocast[enter][:-1]:
            part = partitions[name_of(pid)]
            leave = part.graph.create_node(
                exit_node.op, exit_node.target, (part.environment[enter],), {}, type_expr=exit_node.type
            )
            leave.meta = exit_node.meta.copy()


# Registered in the parent in place of each child while the parent is built: compiling a
# GraphModule also recompiles every GraphModule child, so children attached afterwards are
# compiled once instead of twice.
_STAND_IN = torch.nn.Module()


class _Parent:
    """The parent graph under construction: inputs, attributes, calls to the children."""

    def __init__(self, m: GraphModule, keep_original_node_name: bool | None) -> None:
        self.m = m
        self.graph = Graph()
        self.env: dict[str, Node] = {}
        self.attrs: dict[str, Any] = {}
        self.keep_names = keep_original_node_name
        self.children: dict[str, Partition] = {}

    def bring_in(self, node: Node) -> None:
        if node.name in self.env:
            return
        if node.op == "placeholder":
            default = node.args[0] if node.args else inspect.Signature.empty
            if self.keep_names:
                # The name follows the original node; a '*'/'**' marker on the target must
                # survive, or a ``*args``/``**kwargs`` forward becomes a positional one.
                stars = len(node.target) - len(node.target.lstrip("*"))  # type: ignore[union-attr]
                new = self.graph.create_node(
                    "placeholder",
                    "*" * stars + node.name,
                    args=() if default is inspect.Signature.empty else (default,),
                    name=node.name,
                    type_expr=node.type,
                )
            else:
                new = self.graph.placeholder(node.target, type_expr=node.type, default_value=default)  # type: ignore[arg-type]
        elif node.op == "get_attr":
            new = self.graph.get_attr(node.target)  # type: ignore[arg-type]
            self.attrs[node.target] = fetch_attr(self.m, node.target)  # type: ignore[index,arg-type]
        else:
            return
        new.meta = node.meta.copy()
        self.env[node.name] = new

    def call(self, part: Partition, tuple_return: bool) -> None:
        self.children[part.submod_name] = part
        self.attrs[part.submod_name] = _STAND_IN
        result = self.graph.call_module(part.submod_name, tuple(self.env[n] for n in part.inputs))
        names = list(part.outputs)
        if len(names) > 1 or (names and tuple_return):
            for index, name in enumerate(names):
                self.env[name] = self.graph.call_function(operator.getitem, (result, index))
        elif names:
            self.env[names[0]] = result

    def finish(self) -> GraphModule:
        """The parent module, with each child compiled and attached; every graph linted."""
        module = GraphModule(self.attrs, self.graph)
        for name, part in self.children.items():
            setattr(module, name, GraphModule(part.targets, part.graph))
            part.graph.lint()
        self.graph.lint()
        return module


def split_module(
    m: GraphModule, root_m: torch.nn.Module, split_callback: Callable[[Node], int],
    qualname_map: dict[str, str] | None = None, keep_original_order: bool | None = False,
    keep_original_node_name: bool | None = False, keep_original_input_name: bool = True,
    *, partition_affix: str | None = None, tuple_return: bool = False,
) -> GraphModule:
    """Split ``m`` into a parent module calling one child ``GraphModule`` per partition.

    Args:
        m (GraphModule): the module to split.
        root_m (torch.nn.Module): the module ``m`` was traced from; accepted for
            compatibility and not read.
        split_callback (Callable[[Node], int]): partition id of a computing node; called
            once per node (placeholders, attributes and the output are not asked about).
        qualname_map (Optional[Dict[str, str]]): when given, filled with
            ``"submod_<id>.<flattened>" -> original target`` for every called submodule.
        keep_original_order (bool): call the children in the order their partitions first
            appear in ``m`` instead of a dependency order (moving a partition later only
            where an in-place write needs it).
        keep_original_node_name (bool): children's nodes (and the parent's inputs) keep the
            names they have in ``m``.
        keep_original_input_name (bool): children's placeholders are named after the values
            they receive; when False they are ``arg_0``, ``arg_1``, ...
        partition_affix (Optional[str]): children are named ``submod_<affix>_<id>``.
        tuple_return (bool): a child with a single output still returns a 1-tuple.

    Returns:
        GraphModule: the parent module; ``meta["partition_names"]`` holds the children's names.

    Raises:
        RuntimeError: the partitions depend on each other in a cycle, through values or
            through in-place writes (a partition reading memory both before and after
            another partition writes it).
        AssertionError: autocast or grad-mode regions with partition ids that decrease along
            the graph, or malformed region calls.

    Example::

        >>> gm = torch.fx.symbolic_trace(model)
        >>> parts = split_module(gm, model, lambda n: 0 if n.name == "linear" else 1)
        >>> parts.submod_0, parts.submod_1  # children, called in dependency order
    """
    nodes = list(m.graph.nodes)
    partitions: dict[str, Partition] = {}
    owner: dict[Node, Partition] = {}
    pid_of: dict[Node, Any] = {}
    bindings: dict[Any, Node] = {}

    def name_of(pid: Any) -> str:
        return str(pid) if partition_affix is None else f"{partition_affix}_{pid}"

    for node in nodes:
        symbol = binding_symbol(node)
        if symbol is not None:
            bindings.setdefault(symbol, node)
        if node.op in _UNPARTITIONED:
            continue
        pid = split_callback(node)
        name = name_of(pid)
        part = partitions.get(name)
        if part is None:
            part = partitions[name] = Partition(name)
        part.node_names.append(node.name)
        owner[node] = part
        pid_of[node] = pid

    compute = [n for n in nodes if n in owner]
    regions = Regions(compute, pid_of)
    if regions:
        check_monotonic(compute, pid_of)
    _record_uses(nodes, owner, bindings)
    order = _call_order(m, nodes, partitions, owner, keep_original_order)

    by_name = {n.name: n for n in nodes}
    _build_partition_graphs(
        m, nodes, by_name, partitions, owner, regions, name_of, qualname_map,
        keep_original_node_name, keep_original_input_name,
    )
    for part in partitions.values():
        values = tuple(part.environment[by_name[n]] for n in part.outputs)
        part.graph.output(values[0] if len(values) == 1 and not tuple_return else values)

    parent = _Parent(m, keep_original_node_name)
    if keep_original_order and partitions:
        for node in nodes:
            if node.op == "placeholder":
                parent.bring_in(node)
        for name in order:
            part = partitions[name]
            # attributes appear just before the first child that reads them
            for name in part.inputs:
                if by_name[name].op == "get_attr":
                    parent.bring_in(by_name[name])
            parent.call(part, tuple_return)
        if not parent.env:
            for node in nodes:
                parent.bring_in(node)
    else:
        for node in nodes:
            parent.bring_in(node)
        for name in order:
            parent.call(partitions[name], tuple_return)

    output = next((n for n in reversed(nodes) if n.op == "output"), None)
    if output is not None:
        for source in output.all_input_nodes:
            # an attribute returned as is, read by no child, still needs fetching
            parent.bring_in(source)
        result = parent.graph.output(map_arg(output.args[0], lambda n: parent.env[n.name]))
        result.meta = output.meta.copy()

    split = parent.finish()
    split.meta["partition_names"] = {p.submod_name for p in partitions.values()}
    return split


def split_module_simple(
    m: GraphModule,
    node_to_partition: dict[Node, int],
    *,
    partition_affix: str | None = None,
) -> GraphModule:
    """Split ``m`` by a precomputed node-to-partition map, for graphs without global-state
    regions whose partitions only depend on earlier ones (inference graphs from dynamo).

    Children are called in the order their partitions first appear; no dependency order is
    computed and no cycle is detected.

    Args:
        m (GraphModule): the module to split.
        node_to_partition (Dict[Node, int]): partition id of every node except placeholders
            and the output.
        partition_affix (Optional[str]): children are named ``submod_<affix>_<id>``.

    Returns:
        GraphModule: the parent module calling ``submod_<id>`` children.
    """
    nodes = list(m.graph.nodes)
    owner: dict[Node, Partition] = {}
    partitions: dict[Any, Partition] = {}
    bindings: dict[Any, Node] = {}
    for node in nodes:
        symbol = binding_symbol(node)
        if symbol is not None:
            bindings.setdefault(symbol, node)
        if node.op == "output":
            for source in node.all_input_nodes:
                if source in owner:
                    owner[source].outputs.setdefault(source.name)
            continue
        if node.op == "placeholder":
            continue
        pid = node_to_partition[node]
        part = partitions.get(pid)
        if part is None:
            part = partitions[pid] = Partition(str(pid) if partition_affix is None else f"{partition_affix}_{pid}")
        owner[node] = part
        part.node_names.append(node.name)
        for source in node.all_input_nodes:
            made_by = owner.get(source)
            if made_by is part:
                continue
            if made_by is not None:
                made_by.outputs.setdefault(source.name)
            part.inputs.setdefault(source.name)
            example = source.meta.get("example_value")
            for symbol in free_symbols(example) if example is not None and bindings else ():
                binder = bindings.get(symbol)
                if binder is None or owner.get(binder) is part:
                    continue
                part.inputs.setdefault(binder.name)
                if binder.op != "placeholder" and binder in owner:
                    owner[binder].outputs.setdefault(binder.name)

    by_name = {n.name: n for n in nodes}
    for part in partitions.values():
        for name in part.inputs:
            source = by_name[name]
            ph = part.graph.placeholder(name, type_expr=source.type)
            ph.meta = source.meta.copy()
            part.environment[source] = ph
    for node in nodes:
        part = owner.get(node)
        if part is None:
            continue
        env = part.environment
        if node.op in ("call_module", "get_attr"):
            part.targets[node.target] = fetch_attr(m, node.target)  # type: ignore[index,arg-type]
        copy = part.graph.create_node(
            node.op,
            node.target,
            map_arg(node.args, env.__getitem__),  # type: ignore[arg-type]
            map_arg(node.kwargs, env.__getitem__),  # type: ignore[arg-type]
            type_expr=node.type,
        )
        copy.meta = node.meta.copy()
        env[node] = copy

    parent = _Parent(m, keep_original_node_name=False)
    for node in nodes:
        if node.op == "placeholder":
            ph = parent.graph.placeholder(node.target, type_expr=node.type)  # type: ignore[arg-type]
            ph.meta = node.meta.copy()
            parent.env[node.name] = ph
    for part in partitions.values():
        values = tuple(part.environment[by_name[n]] for n in part.outputs)
        part.graph.output(values[0] if len(values) == 1 else values)
        parent.call(part, tuple_return=False)
    output = next((n for n in reversed(nodes) if n.op == "output"), None)
    if output is not None:
        parent.graph.output(map_arg(output.args[0], lambda n: parent.env[n.name]))
    return parent.finish()
