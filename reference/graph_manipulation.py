"""Graph helpers used by the partitioners: node sizes in bytes, tensor metadata lookup and
retargeting of nodes.

Sizes come from the ``tensor_meta`` that shape propagation records: a node's *output size* is
the bytes of the tensors it produces, its *total size* adds the parameters of the module it
calls (for ``call_module`` nodes).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch.fx import GraphModule
from torch.fx.graph import Graph
from torch.fx.node import Node, Target, map_arg

from reference.shape_prop import ShapeProp, TensorMetadata

__all__ = [
    "replace_target_nodes_with",
    "size_bytes",
    "get_size_of_all_nodes",
    "get_tensor_meta",
    "get_size_of_node",
]


def replace_target_nodes_with(
    fx_module: GraphModule,
    old_op: str,
    old_target: Target,
    new_op: str,
    new_target: Target,
) -> None:
    """Give every node of ``fx_module`` with opcode ``old_op`` and target ``old_target`` the
    opcode ``new_op`` and target ``new_target``, keeping its arguments and name.

    The module's graph is replaced by a rebuilt one (and its code regenerated).

    Args:
        fx_module (GraphModule): the module to edit.
        old_op (str): opcode of the nodes to replace.
        old_target (Target): target of the nodes to replace.
        new_op (str): their new opcode.
        new_target (Target): their new target.
    """
    def selected(node: Node) -> bool:
        return node.op == old_op and node.target == old_target

    rebuilt = Graph()
    copies: dict[Node, Node] = {}
    lookup = copies.__getitem__
    for node in fx_module.graph.nodes:
        if not selected(node):
            copies[node] = rebuilt.node_copy(node, lookup)
            continue
        # a fresh node with the new opcode/target, wired to the copies of its inputs
        args = map_arg(node.args, lookup)
        kwargs = map_arg(node.kwargs, lookup)
        copies[node] = rebuilt.create_node(new_op, new_target, args, kwargs, node.name)  # type: ignore[arg-type]
    rebuilt.lint()
    fx_module.graph = rebuilt


class size_bytes(NamedTuple):  # noqa: N801 - the upstream public name
    """Bytes a node accounts for.

    Args:
        output_size: bytes of the tensors the node produces.
        total_size: ``output_size`` plus the bytes of the parameters of the module a
            ``call_module`` node calls.
    """

    output_size: int
    total_size: int


def get_size_of_all_nodes(fx_module: GraphModule, args: list[torch.Tensor] | None = None) -> None:
    """Set ``node.size_bytes`` (a :class:`size_bytes`) on every node before the output.

    Args:
        fx_module (GraphModule): the module whose nodes are sized.
        args (Optional[List[Tensor]]): example inputs; when given, shape propagation runs
            first so every node has ``tensor_meta``. Without them the metadata must already be
            there.

    Raises:
        RuntimeError: a node has no tensor metadata.
    """
    if args is not None:
        ShapeProp(fx_module).propagate(*args)
    for node in fx_module.graph.nodes:
        if node.op == "output":
            break
        node.size_bytes = get_size_of_node(fx_module, node)


def get_tensor_meta(node: Node) -> Any:
    """The ``tensor_meta`` shape propagation recorded on ``node``.

    Args:
        node (Node): a node of a shape-propagated graph.

    Returns:
        TensorMetadata: the metadata (a container of them for nodes producing several
        tensors).

    Raises:
        RuntimeError: the node has none (shape propagation has not run, or the node produces
            no tensor).
    """
    meta = node.meta.get("tensor_meta")
    if not meta:
        raise RuntimeError(
            f"Node {node} has no tensor metadata associated with it! "
            "Check that shape propagation has run."
        )
    return meta


def _element_size(meta: TensorMetadata) -> int:
    # Every dtype, quantized ones included, knows its storage width.
    return meta.dtype.itemsize


def _tensor_leaves(meta: Any) -> list[TensorMetadata]:
    if isinstance(meta, TensorMetadata):
        return [meta]
    if isinstance(meta, dict):
        meta = list(meta.values())
    if isinstance(meta, (list, tuple)):
        return [leaf for item in meta for leaf in _tensor_leaves(item)]
    return []


def get_size_of_node(fx_module: GraphModule, node: Node) -> size_bytes:
    """Bytes of ``node``'s output, and of its output plus the parameters it calls.

    Args:
        fx_module (GraphModule): the module ``node`` belongs to.
        node (Node): a node with ``tensor_meta``.

    Returns:
        size_bytes: ``(output_size, total_size)``. A node producing several tensors counts
        all of them; parameters are counted in the output's element size.

    Raises:
        RuntimeError: the node has no tensor metadata.
    """
    leaves = _tensor_leaves(get_tensor_meta(node))
    output_size = sum(leaf.shape.numel() * _element_size(leaf) for leaf in leaves)
    parameter_count = 0
    if node.op == "call_module":
        module = fx_module.get_submodule(node.target)  # type: ignore[arg-type]
        parameter_count = sum(p.numel() for p in module.parameters())
    # Parameters are assumed to be stored like the output (the partitioners' convention).
    width = _element_size(leaves[0]) if leaves else 0
    return size_bytes(output_size, output_size + parameter_count * width)
