"""The MKLDNN half of :mod:`reference.optimization`: module conversion helpers, the region
heuristics and the layout pass behind ``optimize_for_inference``.

Everything public here is re-exported by :mod:`reference.optimization`, which is the module
users import.
"""

from __future__ import annotations

import copy
import logging
import operator
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.mkldnn as th_mkldnn

log = logging.getLogger("reference.optimization")


def _split_qualname(target: str) -> tuple[str, str]:
    parent, _, leaf = target.rpartition(".")
    return parent, leaf


def replace_node_module(
    node: fx.Node, modules: dict[str, torch.nn.Module], new_module: torch.nn.Module
) -> None:
    """Install ``new_module`` at the qualified name ``node`` calls, in ``modules`` and in the
    module hierarchy (``modules[""]`` is the root).

    Args:
        node: a ``call_module`` node.
        modules: qualified name to module; updated in place.
        new_module: the module to install.
    """
    if not isinstance(node.target, str):
        raise AssertionError(f"Expected str target, got {type(node.target)}")
    parent, leaf = _split_qualname(node.target)
    modules[node.target] = new_module
    setattr(modules[parent], leaf, new_module)


def fresh_name(base: str, taken: Callable[[str], bool]) -> str:
    stem = base.replace(".", "_") + "_fused"
    name, index = stem, 0
    while taken(name):
        index += 1
        name = f"{stem}_{index}"
    return name


def extract_subgraph(
    orig_module: nn.Module,
    nodes: list[fx.Node],
    inputs: list[fx.Node],
    outputs: list[fx.Node],
) -> fx.GraphModule:
    """Build a module running ``nodes`` of an existing graph on its own.

    Args:
        orig_module: the module owning the attributes and submodules the nodes refer to.
        nodes: the nodes to copy, in execution order.
        inputs: nodes from outside the subgraph that become placeholders (same names).
        outputs: nodes whose values the new module returns, as a list.

    Returns:
        A ``GraphModule`` with one placeholder per input, returning ``outputs`` as a list.
    """
    graph = fx.Graph()
    copies: dict[fx.Node, fx.Node] = {}
    for value in inputs:
        copies[value] = graph.placeholder(value.name)

    def lookup(node: fx.Node) -> fx.Node:
        if node not in copies:
            raise KeyError(
                f"node {node.name} is used by the subgraph but is neither an input nor part of it"
            )
        return copies[node]

    for node in nodes:
        copies[node] = graph.node_copy(node, lookup)
    graph.output([lookup(value) for value in outputs])
    graph.lint()
    return fx.GraphModule(orig_module, graph)


# What MKLDNN computes: modules by exact class, and functions.
_MKLDNN_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_MKLDNN_FUNCTIONS = (torch.relu, torch.transpose, torch.sigmoid, F.relu, F.avg_pool2d, F.adaptive_avg_pool2d)

#: Module classes and functions the MKLDNN layout pass runs in MKLDNN layout.
mkldnn_supported = [*_MKLDNN_MODULES, *_MKLDNN_FUNCTIONS]
#: Functions that run in MKLDNN layout only when an operand already is in that layout
#: (their other operands may be Python numbers, which do not convert).
mkldnn_supported_unknown = [operator.add, operator.mul]


def _mkldnn_twin(module: nn.Module) -> nn.Module | None:
    # Looked up on use: building the Mkldnn* script classes compiles TorchScript.
    kind = type(module)
    if kind is nn.Conv2d:
        return th_mkldnn.MkldnnConv2d(module, torch.float)
    if kind is nn.Linear:
        return th_mkldnn.MkldnnLinear(module, torch.float)
    if kind is nn.BatchNorm2d:
        return th_mkldnn.MkldnnBatchNorm(module)
    return None


def modules_to_mkldnn(
    nodes: list[fx.Node], modules: dict[str, nn.Module]
) -> dict[nn.Module, nn.Module]:
    """Replace the Conv2d, Linear and BatchNorm2d modules called by ``nodes`` with their
    MKLDNN versions.

    Args:
        nodes: nodes to scan; ``call_module`` nodes of convertible modules are converted.
        modules: qualified name to module; updated in place (and the hierarchy with it).

    Returns:
        MKLDNN module to a copy of the module it replaced, for :func:`reset_modules`.
    """
    return _convert_modules(nodes, modules, keep_copies=True)


def _convert_modules(
    nodes: list[fx.Node], modules: dict[str, nn.Module], *, keep_copies: bool
) -> dict[nn.Module, nn.Module]:
    # keep_copies=False hands back the replaced modules themselves: fine when nothing else
    # holds them (the layout pass converts its own copy of the model).
    originals: dict[nn.Module, nn.Module] = {}
    for node in nodes:
        if node.op != "call_module":
            continue
        if not isinstance(node.target, str):
            raise AssertionError(f"Expected str target, got {type(node.target)}")
        dense = modules[node.target]
        twin = _mkldnn_twin(dense)
        if twin is None:
            continue
        originals[twin] = copy.deepcopy(dense) if keep_copies else dense
        replace_node_module(node, modules, twin)
    return originals


def reset_modules(
    nodes: Iterable[fx.Node], modules: dict[str, nn.Module], old_modules: dict[nn.Module, nn.Module]
) -> None:
    """Undo :func:`modules_to_mkldnn` for the modules ``nodes`` call.

    Args:
        nodes: nodes to scan.
        modules: qualified name to module; updated in place.
        old_modules: the mapping :func:`modules_to_mkldnn` returned.
    """
    for node in nodes:
        if node.op != "call_module":
            continue
        if not isinstance(node.target, str):
            raise AssertionError(f"Expected str target, got {type(node.target)}")
        module = modules[node.target]
        if module in old_modules:
            replace_node_module(node, modules, old_modules[module])


class MklSubgraph:
    """A connected region of the graph that runs in MKLDNN layout.

    Args:
        fx_graph: the graph the region belongs to.

    Attributes:
        nodes: the nodes computing on MKLDNN tensors.
        start_nodes: the ``to_mkldnn`` conversions feeding the region.
        end_nodes: the ``to_dense`` conversions leaving it.
    """

    def __init__(self, fx_graph: fx.Graph) -> None:
        self.fx_graph = fx_graph
        self.nodes: list[fx.Node] = []
        self.start_nodes: list[fx.Node] = []
        self.end_nodes: list[fx.Node] = []


def _sample_shapes(
    module: fx.GraphModule, example_inputs: list[torch.Tensor]
) -> dict[fx.Node, torch.Size]:
    """Run ``module`` on ``example_inputs`` and note the shape of every tensor value."""
    shapes: dict[fx.Node, torch.Size] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            value = super().run_node(n)
            if isinstance(value, torch.Tensor):
                shapes[n] = value.shape
            return value

    Recorder(module).run(*example_inputs)
    return shapes


def gen_mkl_autotuner(
    example_inputs: list[torch.Tensor], iters: int = 10, warmup: int = 1
) -> Callable[[MklSubgraph], bool]:
    """A heuristic for :func:`optimize_for_inference` that times each MKLDNN region both ways.

    The first call runs the model once on ``example_inputs`` to learn the shape of every
    value; each region is then timed on random inputs of those shapes, in MKLDNN layout and
    in dense layout, and kept in MKLDNN layout when that is faster.

    Args:
        example_inputs: one value per model input.
        iters: timed runs per measurement.
        warmup: untimed runs before each measurement.

    Returns:
        ``heuristic(subgraph) -> bool``.

    Example::

        heuristic = gen_mkl_autotuner([torch.randn(1, 3, 224, 224)], iters=10)
        fast = optimize_for_inference(model, {"mkldnn_layout_optimize": {"heuristic": heuristic}})
    """
    state: dict[str, Any] = {}

    def timed(run: Callable[[], object]) -> float:
        for _ in range(warmup):
            run()
        begin = time.perf_counter()
        for _ in range(iters):
            run()
        return time.perf_counter() - begin

    def use_mkl_heuristic(graph: MklSubgraph) -> bool:
        owner = graph.fx_graph.owning_module
        if owner is None:
            raise AssertionError("fx_graph.owning_module must not be None")
        if "shapes" not in state:
            # The owner holds the MKLDNN modules, so the whole model runs as it is laid out now.
            state["shapes"] = _sample_shapes(owner, list(example_inputs))
        shapes: dict[fx.Node, torch.Size] = state["shapes"]
        originals: dict[nn.Module, nn.Module] = getattr(graph.fx_graph, "old_modules", {})
        region_inputs = [start.args[0] for start in graph.start_nodes]
        region_outputs = [end.args[0] for end in graph.end_nodes]
        samples = [torch.randn(shapes[value]) for value in region_inputs]
        mkl = extract_subgraph(owner, graph.nodes, graph.start_nodes, region_outputs)
        dense = extract_subgraph(owner, graph.nodes, graph.start_nodes, region_outputs)
        reset_modules(dense.graph.nodes, dict(dense.named_modules()), originals)
        with torch.no_grad():
            mkl_time = timed(
                lambda: [out.to_dense() for out in mkl(*[s.to_mkldnn() for s in samples])]
            )
            dense_time = timed(lambda: dense(*samples))
        return mkl_time < dense_time

    return use_mkl_heuristic


def use_mkl_length(graph: MklSubgraph) -> bool:
    """The default :func:`optimize_for_inference` heuristic: keep a region in MKLDNN layout
    when it has more than two nodes (the conversions in and out cost about as much as a
    couple of layout-neutral operations).

    Args:
        graph: the candidate region.

    Returns:
        True to run the region in MKLDNN layout.
    """
    return len(graph.nodes) > 2


class UnionFind:
    """Disjoint sets over ``0 .. n-1`` (union by size, path compression).

    Args:
        n: the number of elements; each must be added with :meth:`make_set` before use.
    """

    def __init__(self, n: int) -> None:
        # parent[v] is None until v is added; a root is its own parent.
        self.parent: list[int | None] = [None] * n
        # size[r] is the number of elements under root r.
        self.size: list[int] = [0] * n

    def make_set(self, v: int) -> None:
        """Add ``v`` as a set of its own."""
        self.parent[v], self.size[v] = v, 1

    def find(self, v: int) -> int:
        """The representative of ``v``'s set."""
        path = []
        while True:
            up = self.parent[v]
            if up is None:
                raise AssertionError("Parent is None")
            if up == v:
                break
            path.append(v)
            v = up
        for member in path:
            self.parent[member] = v
        return v

    def join(self, a: int, b: int) -> int | None:
        """Merge the sets of ``a`` and ``b``; returns the representative of the union (the
        root of the larger set, ``a``'s on a tie)."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return root_a
        big, small = (root_b, root_a) if self.size[root_b] > self.size[root_a] else (root_a, root_b)
        self.parent[small] = big
        self.size[big] += self.size[small]
        return big


def _all_ones(size: Any) -> bool:
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    return all(s == 1 or s is None for s in sizes)


def _module_runs_in_mkldnn(module: nn.Module) -> bool:
    """Whether MKLDNN computes what ``module`` computes (type membership aside)."""
    if isinstance(module, nn.Conv2d):
        # MkldnnConv2d pads with zeros and needs numeric padding.
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    if isinstance(module, nn.BatchNorm2d):
        return (
            not module.training
            and module.track_running_stats
            and module.affine
            and module.running_mean is not None
        )
    if isinstance(module, nn.MaxPool2d):
        return _all_ones(module.dilation) and not module.return_indices
    if isinstance(module, nn.AvgPool2d):
        return module.divisor_override is None
    if isinstance(module, nn.AdaptiveAvgPool2d):
        # MKLDNN only pools evenly; a 1x1 output divides every input size.
        return _all_ones(module.output_size)
    return True


def _function_runs_in_mkldnn(node: fx.Node) -> bool:
    if node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return _all_ones(size)
    if node.target is F.avg_pool2d:
        divisor = node.args[6] if len(node.args) > 6 else node.kwargs.get("divisor_override")
        return divisor is None
    return True


def _is_conversion(value: Any, method: str) -> bool:
    return isinstance(value, fx.Node) and value.op == "call_method" and value.target == method


def _wants_mkldnn(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        module = modules[node.target]
        if type(module) not in mkldnn_supported:
            return False
        parameter = next(module.parameters(), None)
        if parameter is not None:
            if parameter.dtype != torch.float:
                raise AssertionError("this pass is only for torch.float modules")
            if parameter.device != torch.device("cpu"):
                raise AssertionError("this pass is only for CPU modules")
        return _module_runs_in_mkldnn(module)
    if node.op != "call_function":
        return False
    if node.target in mkldnn_supported:
        return _function_runs_in_mkldnn(node)
    if node.target in mkldnn_supported_unknown:
        # Joins MKLDNN only when an operand already is in MKLDNN layout; every other operand
        # must be a tensor node too (MKLDNN add rejects Python numbers, mul takes them).
        operands = [*node.args, *node.kwargs.values()]
        if not any(_is_conversion(a, "to_dense") for a in operands):
            return False
        numbers_ok = node.target is operator.mul
        return all(
            isinstance(a, fx.Node) or (numbers_ok and isinstance(a, (int, float))) for a in operands
        )
    return False


def mkldnn_add(a: Any, b: Any) -> Any:
    """``a + b`` for operands in MKLDNN layout; MKLDNN does not broadcast, so operands of
    different shapes are added in dense layout and the sum converted back."""
    if isinstance(b, torch.Tensor) and a.shape != b.shape:
        return (a.to_dense() + b.to_dense()).to_mkldnn()
    return a + b


def mkldnn_mul(a: Any, b: Any) -> Any:
    """``a * b`` for operands in MKLDNN layout (a Python number scales directly); operands of
    different shapes are multiplied in dense layout."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
        return (a.to_dense() * b.to_dense()).to_mkldnn()
    return a * b


# Leaves under symbolic tracing (their shape checks read values a Proxy does not have), so a
# module holding them traces again.
fx.wrap("mkldnn_add")
fx.wrap("mkldnn_mul")

# Shapes are only known when the module runs: these check before using MKLDNN's kernels.
_SHAPE_CHECKED = {operator.add: mkldnn_add, operator.mul: mkldnn_mul}
_UNCHECKED = {checked: plain for plain, checked in _SHAPE_CHECKED.items()}


def _wrap_in_conversions(graph: fx.Graph, node: fx.Node) -> None:
    def to_mkldnn(value: fx.Node) -> fx.Node:
        return graph.call_method("to_mkldnn", (value,))

    if node.op == "call_function" and node.target in _SHAPE_CHECKED:
        node.target = _SHAPE_CHECKED[node.target]
        node.meta["is_wrapped"] = True  # the generated code registers the call as a leaf

    with graph.inserting_before(node):
        node.args = fx.map_arg(node.args, to_mkldnn)
        node.kwargs = fx.map_arg(node.kwargs, to_mkldnn)
    with graph.inserting_after(node):
        dense = graph.call_method("to_dense", (node,))
    node.replace_all_uses_with(dense, delete_user_cb=lambda user: user is not dense)


def _drop_round_trips(graph: fx.Graph) -> None:
    """``a -> to_dense -> to_mkldnn -> b`` becomes ``a -> b``."""
    for node in list(graph.nodes):
        if not _is_conversion(node, "to_dense"):
            continue
        for user in list(node.users):
            if _is_conversion(user, "to_mkldnn"):
                user.replace_all_uses_with(node.args[0])
                graph.erase_node(user)
        if not node.users:
            graph.erase_node(node)


def _mkldnn_regions(graph: fx.Graph) -> list[MklSubgraph]:
    """Connected MKLDNN regions: colour each ``to_mkldnn`` node, propagate colours along
    data edges and merge the colours meeting at a node."""
    nodes = list(graph.nodes)
    sets = UnionFind(len(nodes))
    colour: dict[fx.Node, int] = {}
    role: dict[fx.Node, str] = {}
    for index, node in enumerate(nodes):
        if _is_conversion(node, "to_mkldnn"):
            sets.make_set(index)
            colour[node], role[node] = index, "start"
        elif _is_conversion(node, "to_dense"):
            if node.args[0] not in colour:
                raise AssertionError("Expected color for to_dense input")
            colour[node], role[node] = colour[node.args[0]], "end"
        else:
            incoming = sorted(
                {
                    sets.find(colour[i])
                    for i in node.all_input_nodes
                    if role.get(i) in ("start", "inner")
                }
            )
            if not incoming:
                continue
            colour[node], role[node] = incoming[0], "inner"
            for other in incoming[1:]:
                sets.join(incoming[0], other)
    regions: dict[int, MklSubgraph] = {}
    for node in nodes:
        if node not in role:
            continue
        region = regions.setdefault(sets.find(colour[node]), MklSubgraph(graph))
        {"start": region.start_nodes, "end": region.end_nodes, "inner": region.nodes}[
            role[node]
        ].append(node)
    return list(regions.values())


def _return_to_dense(
    graph: fx.Graph,
    gm: fx.GraphModule,
    rejected: list[MklSubgraph],
    originals: dict[nn.Module, nn.Module],
) -> None:
    modules = dict(gm.named_modules())
    for region in rejected:
        for conversion in region.start_nodes + region.end_nodes:
            conversion.replace_all_uses_with(conversion.args[0])
            graph.erase_node(conversion)
        for node in region.nodes:
            if node.op == "call_function" and node.target in _UNCHECKED:
                # Back in dense layout, add/mul are the plain operators again: the checked
                # forms would convert a broadcast result to MKLDNN layout.
                node.target = _UNCHECKED[node.target]
                node.meta.pop("is_wrapped", None)
                continue
            if node.op != "call_module" or modules[node.target] not in originals:
                continue
            # A module also called from a kept region goes back to dense layout too: dense
            # Conv2d, Linear and BatchNorm2d take MKLDNN inputs (and return MKLDNN outputs),
            # so the kept region still computes the same, with the module upstream leaves.
            replace_node_module(node, modules, originals[modules[node.target]])


def layout_optimize(
    model: nn.Module,
    heuristic: Callable[[MklSubgraph], bool],
    tracer: type[fx.Tracer],
    *,
    private: bool = False,
) -> fx.GraphModule:
    """The MKLDNN layout pass of ``optimize_for_inference``: wrap MKLDNN-capable nodes in
    layout conversions, drop back-to-back conversions, group the MKLDNN nodes into regions
    and keep in MKLDNN layout the regions ``heuristic`` accepts.

    ``private`` says ``model`` belongs to the caller alone (a result of ``fuse``), so its
    modules may be converted without copying it first.
    """
    root = model if private else copy.deepcopy(model)
    graph = tracer().trace(root)
    modules = dict(root.named_modules())
    for node in list(graph.nodes):
        if _wants_mkldnn(node, modules):
            _wrap_in_conversions(graph, node)
    originals = _convert_modules(list(graph.nodes), modules, keep_copies=False)
    _drop_round_trips(graph)

    gm = fx.GraphModule(root, graph)
    graph.old_modules = originals  # type: ignore[attr-defined]
    regions = _mkldnn_regions(graph)
    verdicts = [bool(heuristic(region)) for region in regions]
    rejected = [r for r, keep in zip(regions, verdicts) if not keep]
    _return_to_dense(graph, gm, rejected, originals)

    conversions = sum(1 for n in graph.nodes if n.target in ("to_mkldnn", "to_dense"))
    log.info("mkldnn conversions: %s", conversions)
    graph.lint()
    gm.recompile()
    return gm
