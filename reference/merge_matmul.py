"""Merge matrix multiplications that share their right-hand operand.

Reference counterpart of ``torch.fx.experimental.merge_matmul``. Matmuls ``A_i @ B`` with
the same ``B`` and no data dependence among them become one multiplication of the stacked
left operands, whose result is split back into the original products::

    [A_0; A_1; ...] @ B  ->  A_0 @ B, A_1 @ B, ...

The grouping and independence rules are upstream's (same right operand, pairwise
independence searched six nodes deep). The merged computation is one graph node calling
:func:`merged_matmul`, which stacks the left operands by rows whatever their rank and falls
back to separate products when the shared operand is batched (three or more dims), where
stacking rows would mix batch entries; it is a leaf under symbolic tracing (``torch.fx.wrap``),
so the merged module traces again. Groups with an in-place operation between their first
and last matmul that may write to an operand are left alone (the merged product reads the
operands at the last one).
Operands are read when a group is merged, so a group may use the products of an earlier one.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from typing import Any

import torch
from torch.fx._symbolic_trace import symbolic_trace
from torch.fx.node import Node

__all__ = ["split_result_tensors", "may_depend_on", "are_nodes_independent", "merge_matmul"]


def split_result_tensors(
    result: torch.Tensor, inputs: list[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """Split the product of stacked left operands back into one block per operand.

    Args:
        result: the merged product, rows stacked in the order of ``inputs``.
        inputs: the left operands that were stacked (their first dimension sizes the blocks).

    Returns:
        One tensor per input. Under symbolic tracing (``result`` is a Proxy) sizes are not
        known, and zero-sized blocks are requested instead.
    """
    if isinstance(result, torch.fx.Proxy):
        sizes = [0 for _ in inputs]
    else:
        sizes = [operand.shape[0] for operand in inputs]
    return torch.split(result, sizes)


def _ancestry(node: Node, depth: int) -> tuple[set[Node], bool]:
    """Nodes within ``depth`` input edges of ``node`` (itself included), and whether the
    search was cut short: some node exactly ``depth`` edges away still has inputs."""
    seen = {node}
    frontier = {node}
    for level in range(depth + 1):
        following: set[Node] = set()
        for current in frontier:
            inputs = current.all_input_nodes
            if inputs and level == depth:
                return seen, True
            following.update(inputs)
        if not following:
            return seen, False
        seen |= following
        frontier = following
    return seen, False


def may_depend_on(a: Node, b: Node, search_depth: int = 6) -> bool:
    """Whether ``a`` may read the value of ``b``, directly or through other nodes.

    Args:
        a: the possibly dependent node.
        b: the possible dependency.
        search_depth: how many input edges to follow from ``a``; when the search ends before
            every path does, the answer is a conservative True.

    Returns:
        False only when ``a`` certainly does not depend on ``b`` (a node depends on itself).
    """
    reached, cut_short = _ancestry(a, search_depth)
    return b in reached or cut_short


def are_nodes_independent(nodes: list[Node]) -> bool:
    """Whether no node of ``nodes`` may depend on another (see :func:`may_depend_on`).

    Args:
        nodes: the nodes to check; a node listed twice depends on itself.

    Returns:
        True when every pair is independent.
    """
    if len(nodes) < 2:
        return True
    searches = [_ancestry(node, 6) for node in nodes]
    if any(cut_short for _, cut_short in searches):
        return False
    for (i, (reached_i, _)), (j, (reached_j, _)) in itertools.combinations(enumerate(searches), 2):
        if nodes[j] in reached_i or nodes[i] in reached_j:
            return False
    return True


def merged_matmul(lhs: list[torch.Tensor], rhs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tuple(torch.matmul(x, rhs) for x in lhs)`` computed with one multiplication.

    Every left operand is flattened to rows of length ``K`` (``rhs.shape[0]``), the rows are
    stacked, multiplied by ``rhs`` once, and each block is reshaped to the shape
    ``torch.matmul`` gives. A batched ``rhs`` (three or more dims) broadcasts against the
    operands' batch dims, so those products are computed one by one.

    Args:
        lhs: the left operands.
        rhs: the shared right operand.

    Returns:
        One product per left operand.
    """
    if rhs.dim() > 2 or rhs.dim() == 0 or rhs.shape[0] == 0 or any(x.dim() == 0 for x in lhs):
        return tuple(torch.matmul(x, rhs) for x in lhs)
    width = rhs.shape[0]
    rows = [x.reshape(-1, width) for x in lhs]
    product = torch.matmul(torch.cat(rows), rhs)
    blocks = torch.split(product, [r.shape[0] for r in rows])
    tail = tuple(rhs.shape[1:])
    return tuple(b.reshape(tuple(x.shape[:-1]) + tail) for b, x in zip(blocks, lhs))


# A leaf under symbolic tracing: its branches read operand ranks, which a Proxy does not have.
torch.fx.wrap("merged_matmul")


def _operands(node: Node) -> tuple[Node, Node] | None:
    """``(lhs, rhs)`` of a ``torch.matmul`` call, or None when it cannot be merged."""
    if node.op != "call_function" or node.target is not torch.matmul:
        return None
    named = dict(node.kwargs)
    if named.pop("out", None) is not None:
        return None
    positional = list(node.args)
    for name in ("input", "other")[len(positional) :]:
        if name in named:
            positional.append(named.pop(name))
    if named or len(positional) != 2 or not all(isinstance(x, Node) for x in positional):
        return None
    return positional[0], positional[1]


def _rhs_key(node: Node) -> Any:
    # Reading the same attribute twice gives the same tensor: group by attribute name.
    return ("attr", node.target) if node.op == "get_attr" else node


#: ``x += y`` and friends, which fx records as these functions (in place on tensors).
_AUGMENTED = frozenset(
    getattr(operator, f"i{name}")
    for name in (
        "add",
        "sub",
        "mul",
        "matmul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "and",
        "or",
        "xor",
        "lshift",
        "rshift",
    )
)

#: Tensor methods and functions whose result may share memory with their first argument.
_VIEW_METHODS = frozenset(
    "view view_as reshape reshape_as transpose permute t T mT expand expand_as squeeze unsqueeze "
    "flatten unflatten narrow select detach as_strided contiguous chunk split unbind movedim "
    "swapaxes swapdims diagonal real imag __getitem__".split()
)
_VIEW_FUNCTIONS = frozenset(
    {
        operator.getitem,
        torch.reshape,
        torch.transpose,
        torch.permute,
        torch.t,
        torch.squeeze,
        torch.unsqueeze,
        torch.flatten,
        torch.narrow,
        torch.select,
        torch.detach,
        torch.chunk,
        torch.split,
        torch.unbind,
        torch.movedim,
        torch.swapaxes,
        torch.diagonal,
        torch.as_strided,
    }
)


def _mutated(node: Node) -> Node | None:
    """The node whose value ``node`` writes to in place, if any."""
    first = node.args[0] if node.args and isinstance(node.args[0], Node) else None
    if isinstance(node.kwargs.get("out"), Node):
        return node.kwargs["out"]
    if node.op == "call_method":
        in_place = node.target.endswith("_") and not node.target.endswith("__")
    elif node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        in_place = node.target in _AUGMENTED or (name.endswith("_") and not name.endswith("__"))
    elif node.op == "call_module":
        owner = node.graph.owning_module
        module = owner.get_submodule(node.target) if owner is not None else None
        in_place = bool(getattr(module, "inplace", False))
    else:
        in_place = False
    return first if in_place else None


def _storage_roots(node: Node) -> set[Node]:
    """Nodes whose memory ``node``'s value may share: follow views, in-place results (which
    are their argument) and module calls (nn.Identity returns its input) to their source."""
    roots: set[Node] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        first = current.args[0] if current.args and isinstance(current.args[0], Node) else None
        aliasing = (
            (current.op == "call_method" and current.target in _VIEW_METHODS)
            or (current.op == "call_function" and current.target in _VIEW_FUNCTIONS)
            or current.op == "call_module"
            or _mutated(current) is not None
        )
        if aliasing and first is not None:
            pending.append(first)
        else:
            roots.add(current)
    return roots


def _span_mutates_inputs(members: list[Node]) -> bool:
    """Whether a node between the first and last member writes to memory that the merge
    reads later than the original program did: the operands (read at the last member's
    position) or the inputs of nodes that move below the merged product (they use an
    earlier member's result)."""
    group = set(members)
    span: list[Node] = []
    node = members[0].next
    while node is not members[-1]:
        span.append(node)
        node = node.next
    moved: set[Node] = set()
    read: set[Node] = set()
    for member in members:
        read.update(member.all_input_nodes)
    for node in span:
        if node in group or any(i in group or i in moved for i in node.all_input_nodes):
            moved.add(node)
            read.update(node.all_input_nodes)
    watched: set[Node] = set()
    for value in read:
        watched |= _storage_roots(value)
    for node in span:
        target = _mutated(node)
        if target is not None and _storage_roots(target) & watched:
            return True
    return False


def _restore_topological_order(graph: torch.fx.Graph) -> None:
    """Reorder nodes so definitions precede uses, keeping the current order wherever it is
    already valid (a stable Kahn sort: among ready nodes, the earliest goes first)."""
    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    waiting = {node: len(node.all_input_nodes) for node in nodes}
    ready = [position[node] for node in nodes if waiting[node] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for user in node.users:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, position[user])
    if len(order) != len(nodes):
        raise RuntimeError("merge_matmul produced a cyclic graph")
    for before, after in zip(order, order[1:]):
        if before.next is not after:
            before.append(after)


def merge_matmul(in_mod: torch.nn.Module) -> torch.fx.GraphModule:
    """Merge ``torch.matmul`` calls that share their right operand into one multiplication.

    Args:
        in_mod: the module to transform; it is traced with ``symbolic_trace`` and not
            modified.

    Returns:
        A ``GraphModule`` where each group of two or more independent matmuls with the same
        right operand is one :func:`merged_matmul` node followed by one ``getitem`` per
        original product.
    """
    gm = symbolic_trace(in_mod)
    graph = gm.graph
    groups: dict[Any, list[Node]] = {}
    for node in graph.nodes:
        operands = _operands(node)
        if operands is not None:
            groups.setdefault(_rhs_key(operands[1]), []).append(node)

    moved = False
    for members in groups.values():
        if len(members) < 2 or not are_nodes_independent(members):
            continue
        if _span_mutates_inputs(members):
            continue
        # Operands are read now, not when grouping: an earlier merge may have replaced one.
        pairs = [_operands(member) for member in members]
        last = members[-1]
        with graph.inserting_after(last):
            merged = graph.call_function(merged_matmul, ([lhs for lhs, _ in pairs], pairs[0][1]))
        # The generated code registers the call as a leaf, so the merged module traces again.
        merged.meta["is_wrapped"] = True
        with graph.inserting_after(merged):
            pieces = [
                graph.call_function(operator.getitem, (merged, i)) for i in range(len(members))
            ]
        for member, piece in zip(members, pieces):
            member.replace_all_uses_with(piece)
            graph.erase_node(member)
        moved = True

    if moved:
        _restore_topological_order(graph)
    graph.lint()
    gm.recompile()
    return gm
