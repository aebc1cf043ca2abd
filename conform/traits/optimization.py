"""Traits of the optimization family's known divergences (fuse, remove_dropout,
optimize_for_inference, merge_matmul, validator): which cases have the shape each bug needs.

Each trait is ``(graph_module, built, params) -> bool`` over the engine's trace of the case
(see :class:`conform.known.Match`). Traits that need values run a deep copy of the traced
module on copies of the case's inputs, so the engine's shared module and its buffers stay as
they were. The fusion traits read ``params["conv_bn_fuse"]`` (absent on the ``fuse`` row,
where fusion always runs) so that ``optimize_for_inference`` entries can use them too.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator
from typing import Any

import sympy
import torch
import torch.fx
import torch.nn as nn

from conform.adapters import clone_values
from conform.execute import seed_everything
from conform.traits._effects import RESHAPE, WRITE, observe
from conform.traits._values import CallInterpreter
from generators.sources import Built

Node = torch.fx.Node


# --- values of a case --------------------------------------------------------------------------


class _Recorder(CallInterpreter):
    """Runs the graph on the case's call and keeps what every node computes."""

    def __init__(self, module: torch.fx.GraphModule, kwargs: dict[str, Any]) -> None:
        super().__init__(module, kwargs)
        self.values: dict[str, Any] = {}

    def run_node(self, n: Node) -> Any:
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def _values(graph_module: torch.fx.GraphModule, built: Built) -> dict[str, Any]:
    """What every node of the traced case computes, keyed by node name."""
    private = copy.deepcopy(graph_module)
    recorder = _Recorder(private, clone_values(built.kwargs))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        seed_everything(0)
        recorder.run(*clone_values(built.args))
    return recorder.values


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


# --- fuse: batch-norm folding --------------------------------------------------------------------

_FOLDED = {
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
    (nn.Linear, nn.BatchNorm1d),
}


def _fusion_runs(params: dict[str, Any]) -> bool:
    return bool(params.get("conv_bn_fuse", True))


def _fold_pairs(graph_module: torch.fx.GraphModule) -> Iterator[tuple[Node, Node, nn.Module, nn.Module]]:
    """``(producer, norm, producer module, norm module)`` for every norm call that fuse
    treats as foldable: a batch norm tracking running statistics whose first argument is the
    only use of a conv (or Linear) call of the matching kind."""
    modules = dict(graph_module.named_modules())
    for node in graph_module.graph.nodes:
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], Node):
            continue
        producer = node.args[0]
        if producer.op != "call_module" or len(producer.users) != 1:
            continue
        first, norm = modules.get(producer.target), modules.get(node.target)
        if (type(first), type(norm)) not in _FOLDED or not norm.track_running_stats:
            continue
        yield producer, node, first, norm


def _evaluating(*modules: nn.Module) -> bool:
    return not any(m.training for m in modules)


def _related(a: str, b: str) -> bool:
    """Whether qualified names ``a`` and ``b`` are the same or one contains the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def fold_into_shared_module(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A foldable conv/Linear whose qualified name another node also uses: a second call of
    the same module, a read of its weight (``get_attr conv.weight``), or a call of a module
    containing it. Folding in place changes what those other uses see."""
    if not _fusion_runs(params):
        return False
    references = [n for n in graph_module.graph.nodes if n.op in ("call_module", "get_attr")]
    for producer, _, first, norm in _fold_pairs(graph_module):
        if not _evaluating(first, norm):
            continue
        if any(other is not producer and _related(str(other.target), producer.target) for other in references):
            return True
    return False


def _linear_pairs(graph_module: torch.fx.GraphModule, params: dict[str, Any]) -> Iterator[tuple[Node, nn.Linear, nn.Module]]:
    if not _fusion_runs(params):
        return
    for producer, _, first, norm in _fold_pairs(graph_module):
        if isinstance(first, nn.Linear) and _evaluating(first, norm):
            yield producer, first, norm


def linear_norm_without_affine(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An eval-mode Linear + BatchNorm1d(affine=False) pair whose feature counts fold
    (``num_features`` is ``out_features`` or 1): the norm has no weight to multiply."""
    return any(
        norm.weight is None and norm.num_features in (first.out_features, 1)
        for _, first, norm in _linear_pairs(graph_module, params)
    )


def linear_norm_other_channels(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An eval-mode Linear + BatchNorm1d pair whose norm counts neither the Linear's output
    features nor a single channel (it normalizes dim 1 of an (N, C, L) output)."""
    return any(
        norm.num_features not in (first.out_features, 1)
        for _, first, norm in _linear_pairs(graph_module, params)
    )


def linear_norm_over_sequence(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An eval-mode Linear + BatchNorm1d pair with ``num_features == out_features > 1``
    whose Linear produces a 3-D (N, L, C) output at the case's inputs: the norm runs over
    dim 1 (L, which then equals the feature count), not over the output features."""
    candidates = [
        producer.name
        for producer, first, norm in _linear_pairs(graph_module, params)
        if norm.num_features == first.out_features > 1
    ]
    if not candidates:
        return False
    values = _values(graph_module, built)
    return any(len(_shape(values.get(name)) or ()) == 3 for name in candidates)


# --- remove_dropout ------------------------------------------------------------------------------


def dropout_called_by_keyword(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An ``nn.Dropout`` module call whose input is not its one positional argument
    (``self.drop(input=x)``), with dropout removal switched on."""
    if not params.get("remove_dropout", True):
        return False
    modules = dict(graph_module.named_modules())
    return any(
        node.op == "call_module" and isinstance(modules.get(node.target), nn.Dropout) and len(node.args) != 1
        for node in graph_module.graph.nodes
    )


# --- optimize_for_inference: the MKLDNN layout pass ----------------------------------------------

# add/mul, which upstream's layout pass routes through MKLDNN when an operand already is.
_ARITHMETIC = (operator.add, operator.mul)
# Module classes upstream converts to MKLDNN modules (MkldnnConv2d, MkldnnLinear, ...).
_CONVERTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def _layout_runs(params: dict[str, Any]) -> bool:
    return params.get("mkldnn", "length") not in ("off", "never")


def arithmetic_with_a_number(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An ``x + 1`` / ``x * 2`` (operator.add or operator.mul with an argument that is not a
    node), with the layout pass on: upstream reads ``.target`` of every argument."""
    if params.get("mkldnn", "length") == "off":
        return False
    return any(
        node.op == "call_function"
        and node.target in _ARITHMETIC
        and any(not isinstance(arg, Node) for arg in node.args)
        for node in graph_module.graph.nodes
    )


def layout_pass_on_callers_model(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The layout pass runs on the caller's own model (fusion and dropout removal, which
    would hand it a copy, are off) and the model calls a module MKLDNN converts."""
    if params.get("conv_bn_fuse", True) or params.get("remove_dropout", True) or not _layout_runs(params):
        return False
    modules = dict(graph_module.named_modules())
    return any(
        node.op == "call_module" and type(modules.get(node.target)) in _CONVERTED
        for node in graph_module.graph.nodes
    )


def parameter_of_converted_module_read(graph_module: torch.fx.GraphModule, built: Built,
                                       params: dict[str, Any]) -> bool:
    """With the layout pass on, forward reads a parameter or buffer (``self.conv.weight``) of a
    module it also calls and MKLDNN converts: after conversion that tensor is an MKLDNN one."""
    if not _layout_runs(params):
        return False
    modules = dict(graph_module.named_modules())
    called = {node.target for node in graph_module.graph.nodes
              if node.op == "call_module" and type(modules.get(node.target)) in _CONVERTED}
    return any(
        node.op == "get_attr" and str(node.target).rpartition(".")[0] in called
        for node in graph_module.graph.nodes
    )


def broadcasting_arithmetic(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An add/mul of two tensors of different shapes (one broadcasts), with the layout pass on."""
    if not _layout_runs(params):
        return False
    pairs = [
        (node.args[0].name, node.args[1].name)
        for node in graph_module.graph.nodes
        if node.op == "call_function" and node.target in _ARITHMETIC and len(node.args) == 2
        and all(isinstance(arg, Node) for arg in node.args)
    ]
    if not pairs:
        return False
    values = _values(graph_module, built)
    for left, right in pairs:
        shapes = _shape(values.get(left)), _shape(values.get(right))
        if None not in shapes and shapes[0] != shapes[1]:
            return True
    return False


# What the layout pass runs in MKLDNN layout (add/mul join a region through an operand).
_MKLDNN_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_MKLDNN_FUNCTIONS = (torch.relu, torch.transpose, torch.sigmoid, torch.nn.functional.relu,
                     torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_avg_pool2d)


def _runs_in_mkldnn(node: Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules.get(node.target)) in _MKLDNN_MODULES
    return node.op == "call_function" and any(node.target is f for f in _MKLDNN_FUNCTIONS)


# The dtypes Tensor.to_mkldnn converts.
_MKLDNN_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.uint8, torch.int8)


def unconvertible_value_in_layout(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A tensor MKLDNN layout cannot hold (0-dim, such as ``x.min()``, or of another dtype,
    such as ``x.argmax(1)``) enters an MKLDNN-capable op, or an add/mul that one feeds, with
    the layout pass on."""
    if not _layout_runs(params):
        return False
    modules = dict(graph_module.named_modules())
    capable = {n for n in graph_module.graph.nodes if _runs_in_mkldnn(n, modules)}
    joining = [
        n for n in graph_module.graph.nodes
        if n.op == "call_function" and n.target in _ARITHMETIC and any(a in capable for a in n.all_input_nodes)
    ]
    sites = [*capable, *joining]
    if not sites:
        return False
    values = _values(graph_module, built)

    def unconvertible(node: Node) -> bool:
        value = values.get(node.name)
        return isinstance(value, torch.Tensor) and (value.dim() == 0 or value.dtype not in _MKLDNN_DTYPES)

    return any(unconvertible(i) for site in sites for i in site.all_input_nodes)


def _pools_unevenly(size: Any) -> bool:
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    return any(s is not None and s != 1 for s in sizes)


def uneven_adaptive_pool_in_layout(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """An adaptive average pool (F.adaptive_avg_pool2d or nn.AdaptiveAvgPool2d) whose output
    is not 1x1, with the layout pass on: MKLDNN pools only input sizes the output divides."""
    if not _layout_runs(params):
        return False
    modules = dict(graph_module.named_modules())
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target is torch.nn.functional.adaptive_avg_pool2d:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            if _pools_unevenly(size):
                return True
        if node.op == "call_module" and type(modules.get(node.target)) is nn.AdaptiveAvgPool2d:
            if _pools_unevenly(modules[node.target].output_size):
                return True
    return False


# --- merge_matmul ----------------------------------------------------------------------------------


def _matmul_groups(graph_module: torch.fx.GraphModule) -> list[list[Node]]:
    """``torch.matmul(lhs, rhs)`` calls grouped by right operand (attribute reads by name),
    groups of two or more whose members upstream finds independent."""
    groups: dict[Any, list[Node]] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target is not torch.matmul or node.kwargs or len(node.args) != 2:
            continue
        if not all(isinstance(arg, Node) for arg in node.args):
            continue
        rhs = node.args[1]
        groups.setdefault(("attr", rhs.target) if rhs.op == "get_attr" else rhs, []).append(node)
    return [members for members in groups.values() if len(members) > 1 and _independent(members)]


def _may_reach(a: Node, b: Node, depth: int) -> bool:
    """Upstream's dependence test: ``b`` is among ``a``'s inputs within ``depth`` edges, or
    the search ran out of depth with inputs left (taken as a dependence)."""
    if a is b:
        return True
    if not a.all_input_nodes:
        return False
    if depth == 0:
        return True
    return any(_may_reach(i, b, depth - 1) for i in a.all_input_nodes)


def _independent(members: list[Node]) -> bool:
    return not any(
        _may_reach(a, b, 6) or _may_reach(b, a, 6)
        for i, a in enumerate(members)
        for b in members[i + 1:]
    )


def two_groups_to_merge(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """At least two groups of independent matmuls sharing a right operand each."""
    return len(_matmul_groups(graph_module)) >= 2


def _group_shapes(graph_module: torch.fx.GraphModule, built: Built) -> Iterator[tuple[list[tuple[int, ...]], tuple[int, ...]]]:
    """``(left operand shapes, right operand shape)`` of every group, at the case's inputs."""
    groups = _matmul_groups(graph_module)
    if not groups:
        return
    values = _values(graph_module, built)
    for members in groups:
        lhs = [_shape(values.get(m.args[0].name)) for m in members]
        rhs = _shape(values.get(members[0].args[1].name))
        if rhs is not None and None not in lhs:
            yield lhs, rhs  # type: ignore[misc]


def batched_shared_operand(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A group whose shared right operand has three or more dims (a batch dim first)."""
    return any(len(rhs) >= 3 for _, rhs in _group_shapes(graph_module, built))


def left_operands_not_stackable(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A group (right operand of at most 2 dims) whose left operands cannot be concatenated
    along dim 0 as upstream does: a 1-D operand, operands of different ranks, or sizes that
    differ beyond dim 0."""
    for lhs, rhs in _group_shapes(graph_module, built):
        if len(rhs) >= 3:
            continue
        if any(len(shape) < 2 for shape in lhs) or len({shape[1:] for shape in lhs}) > 1:
            return True
    return False


def batched_left_operands_of_mixed_ranks(graph_module: torch.fx.GraphModule, built: Built,
                                        params: dict[str, Any]) -> bool:
    """A group whose shared right operand is batched (3 or more dims) and whose left
    operands differ in rank: concatenating them along dim 0 raises before any split."""
    return any(len(rhs) >= 3 and len({len(shape) for shape in lhs}) > 1 for lhs, rhs in _group_shapes(graph_module, built))


def matmul_with_keyword_operand(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A ``torch.matmul`` call that does not pass exactly its two operands by position."""
    return any(
        node.op == "call_function" and node.target is torch.matmul and (node.kwargs or len(node.args) != 2)
        for node in graph_module.graph.nodes
    )


def in_place_update_in_merged_graph(graph_module: torch.fx.GraphModule, built: Built,
                                    params: dict[str, Any]) -> bool:
    """A group upstream merges, in a graph that updates in place memory another node reads.
    Upstream computes the whole group where its last matmul was and then re-sorts the whole
    graph breadth-first by data dependences alone; neither step sees in-place updates, so a
    read of the updated memory (by a merged matmul or by any other node) can move to the
    other side of the update."""
    if not _matmul_groups(graph_module):
        return False
    # which memory is updated and who else touches it is observed on a run of the case
    # (conform.traits._effects), not taken from the reference merge's own judgement
    for events in observe(graph_module, built).accesses.values():
        writers = {a.node for a in events if a.kind in (WRITE, RESHAPE)}
        if writers and any(a.node not in writers or len(writers) > 1 for a in events):
            return True
    return False


# --- validator -------------------------------------------------------------------------------------


def _subtrees(tree: list[Any]) -> Iterator[list[Any]]:
    yield tree
    if tree[0] not in ("sym", "int"):
        yield from _subtrees(tree[1])
        yield from _subtrees(tree[2])


def _evaluator(built: Built) -> Any:
    """A function evaluating an expression tree at the case's input sizes (Python integers,
    or None where SymPy gives no integer)."""
    from conform.drivers.optimization import _build

    leaves = torch.utils._pytree.tree_leaves((built.args, built.kwargs))
    sizes = [int(s) for leaf in leaves if isinstance(leaf, torch.Tensor) for s in leaf.shape]
    symbols = [sympy.Symbol(f"s{i}", integer=True, positive=size > 0) for i, size in enumerate(sizes)]
    at = dict(zip(symbols, map(sympy.Integer, sizes)))

    def evaluate(tree: list[Any]) -> int | None:
        value = _build(tree, symbols).subs(at)
        return int(value) if isinstance(value, sympy.Integer) else None

    return evaluate


def _has_op(params: dict[str, Any], ops: tuple[str, ...]) -> bool:
    expr = params.get("expr")
    return bool(expr) and any(t[0] in ops for t in _subtrees(expr))


def truncation_in_expression(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The expression truncates a quotient (``TruncToInt(IntTrueDiv(a, b))``)."""
    return _has_op(params, ("trunc_div",))


def truncation_of_negative_fraction(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The expression truncates a quotient that is negative and not whole at the case's
    sizes, where truncating and flooring differ."""
    if not truncation_in_expression(graph_module, built, params):
        return False
    evaluate = _evaluator(built)
    for tree in _subtrees(params["expr"]):
        if tree[0] != "trunc_div":
            continue
        a, b = evaluate(tree[1]), evaluate(tree[2])
        if a is not None and b not in (None, 0) and a * b < 0 and a % b != 0:
            return True
    return False


def bitwise_in_expression(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The expression has a bitwise and/or."""
    return _has_op(params, ("band", "bor"))


def negative_bitwise_result(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A bitwise and/or of the expression is negative at the case's sizes, where reading its
    64-bit vector unsigned gives 2**64 - |r|."""
    if not bitwise_in_expression(graph_module, built, params):
        return False
    evaluate = _evaluator(built)
    for tree in _subtrees(params["expr"]):
        if tree[0] not in ("band", "bor"):
            continue
        a, b = evaluate(tree[1]), evaluate(tree[2])
        if a is not None and b is not None and (a & b if tree[0] == "band" else a | b) < 0:
            return True
    return False
