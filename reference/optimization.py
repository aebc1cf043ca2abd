"""Inference-time graph optimizations: batch-norm folding, dropout removal and MKLDNN layout.

This is the reference counterpart of ``torch.fx.experimental.optimization``. The public
surface is the same; the behaviour differs from upstream only where upstream computes the
wrong thing or crashes on a valid model (see ``conform/known/``):

* a convolution module that is called from more than one place (or whose parameters are read
  directly) is folded into a *new* submodule, so the other calls keep the unfolded weights;
* the input model is never modified, ``inplace=True`` only skips the defensive deep copy;
* Linear + BatchNorm1d folds also without affine parameters, and is left alone when the
  feature counts cannot be folded;
* dropout modules called with keyword arguments are removed like positional ones;
* the MKLDNN pass converts a private copy of the model, skips modules MKLDNN would compute
  differently, and only routes ``add``/``mul`` through MKLDNN when every operand is a tensor
  already in MKLDNN layout.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from reference._mkldnn_layout import (
    MklSubgraph,
    UnionFind,
    extract_subgraph,
    fresh_name,
    gen_mkl_autotuner,
    layout_optimize,
    modules_to_mkldnn,
    replace_node_module,
    reset_modules,
    use_mkl_length,
)

# module-level tables: public upstream, outside its __all__
from reference._mkldnn_layout import mkldnn_supported as mkldnn_supported
from reference._mkldnn_layout import mkldnn_supported_unknown as mkldnn_supported_unknown

__all__ = [
    # folding and dropout removal
    "fuse", "remove_dropout", "matches_module_pattern", "replace_node_module", "extract_subgraph",
    # the MKLDNN layout pass
    "optimize_for_inference", "MklSubgraph", "use_mkl_length", "gen_mkl_autotuner",
    "modules_to_mkldnn", "reset_modules", "UnionFind",
]

#: (producer, batch norm) module classes ``fuse`` folds, matched by exact type.
_FOLD_PATTERNS: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
    (nn.Linear, nn.BatchNorm1d),
)


def matches_module_pattern(
    pattern: Iterable[type], node: fx.Node, modules: dict[str, torch.nn.Module]
) -> bool:
    """Whether ``node`` and its first argument are module calls of the classes in ``pattern``.

    ``pattern`` is ``(producer_class, consumer_class)``; ``node`` is the consumer and
    ``node.args[0]`` the producer. Classes must match exactly (subclasses do not).

    Args:
        pattern: the two module classes, producer first.
        node: the candidate consumer node.
        modules: qualified name to module, as ``dict(gm.named_modules())``.

    Returns:
        True when both nodes are ``call_module`` nodes of the expected classes.
    """
    if not node.args:
        return False
    for expected, candidate in zip(pattern, (node.args[0], node)):
        if not isinstance(candidate, fx.Node) or candidate.op != "call_module":
            return False
        if not isinstance(candidate.target, str):
            return False
        module = modules.get(candidate.target)
        if module is None or type(module) is not expected:
            return False
    return True


def _shared_targets(graph: fx.Graph) -> set[str]:
    """Qualified names whose module must keep its original parameters: those referenced by
    more than one node, or whose ancestors or descendants are referenced too (a folded
    module installed there would be seen by those other references)."""
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr") and isinstance(node.target, str):
            counts[node.target] = counts.get(node.target, 0) + 1
    shared = {name for name, n in counts.items() if n > 1}
    for name in counts:
        atoms = name.split(".")
        for cut in range(1, len(atoms)):
            prefix = ".".join(atoms[:cut])
            if prefix in counts:
                shared.add(prefix)
                shared.add(name)
    return shared


def _install(root: nn.Module, qualname: str, module: nn.Module) -> None:
    parent: nn.Module = root
    *path, leaf = qualname.split(".")
    for atom in path:
        child = getattr(parent, atom, None)
        if child is None:
            child = nn.Module()
            setattr(parent, atom, child)
        parent = child
    setattr(parent, leaf, module)


def _foldable(first: nn.Module, norm: nn.Module) -> bool:
    if norm.running_mean is None or norm.running_var is None:
        return False
    if isinstance(first, nn.Linear):
        # The norm's per-channel scale becomes a per-output-feature scale of the Linear: the
        # channel count must be the feature count, or 1 (one scale for everything).
        return norm.num_features in (first.out_features, 1)
    return norm.num_features == first.out_channels


def _fold(first: nn.Module, norm: nn.Module) -> nn.Module:
    """A copy of ``first`` (a conv or Linear, weight laid out output-channel first) whose
    output equals ``norm(first(x))`` in eval mode."""
    weight = first.weight
    # At least float32, so a half-precision producer is rounded once, at the end.
    wide = torch.promote_types(torch.promote_types(weight.dtype, torch.float32), norm.running_var.dtype)
    out_channels = weight.shape[0]
    with torch.no_grad():
        mean = norm.running_mean.to(wide)
        scale = torch.rsqrt(norm.running_var.to(wide) + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.to(wide)
        scale = scale.expand(out_channels) if scale.numel() == 1 else scale
        shift = -mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias.to(wide)
        if first.bias is not None:
            bias = first.bias.to(wide) * scale + shift
            bias_dtype, bias_grad = first.bias.dtype, first.bias.requires_grad
        else:
            bias = shift.expand(out_channels).contiguous()
            bias_dtype, bias_grad = weight.dtype, False
        new_weight = weight.to(wide) * scale.reshape((-1,) + (1,) * (weight.dim() - 1))
    # Everything but the two parameters is copied; those are replaced right away.
    replaced = {id(p): p for p in (first.weight, first.bias) if p is not None}
    folded = copy.deepcopy(first, memo=replaced)
    folded.weight = nn.Parameter(new_weight.to(weight.dtype), weight.requires_grad)
    folded.bias = nn.Parameter(bias.to(bias_dtype), bias_grad)
    return folded


def fuse(model: torch.nn.Module, inplace: bool = False, no_trace: bool = False) -> torch.nn.Module:
    """Fold eval-mode BatchNorm modules into the Conv1d/2d/3d or Linear module feeding them.

    A ``bn(conv(x))`` pair is folded when the convolution's output has no other user and the
    batch norm tracks running statistics; the batch norm call disappears and the convolution
    is replaced by one with rescaled weights (kept in the convolution's dtype). Chains
    ``bn2(bn1(conv(x)))`` fold completely.

    Args:
        model: the module to optimize; it is never modified.
        inplace: when True the result shares the untouched submodules with ``model`` instead
            of working on a deep copy.
        no_trace: when ``model`` is already a ``GraphModule``, use its graph as is instead of
            tracing it again.

    Returns:
        A ``GraphModule`` computing what ``model`` computes (up to rounding).

    Raises:
        AssertionError: a foldable pair is in training mode.
    """
    source = model if inplace else copy.deepcopy(model)
    if no_trace and isinstance(source, fx.GraphModule):
        traced = source
    else:
        traced = fx.symbolic_trace(source)
    graph = copy.deepcopy(traced.graph)
    modules = dict(traced.named_modules())
    shared = _shared_targets(graph)

    # What each producer node calls once folding started: a folded module replaces the
    # original for that node only (chains of batch norms fold into the same node).
    current: dict[fx.Node, nn.Module] = {}
    installs: dict[fx.Node, nn.Module] = {}

    def module_of(node: fx.Node) -> nn.Module | None:
        if node in current:
            return current[node]
        return modules.get(node.target) if isinstance(node.target, str) else None

    for node in list(graph.nodes):
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        producer = node.args[0]
        if producer.op != "call_module":
            continue
        first, norm = module_of(producer), module_of(node)
        pattern = (type(first), type(norm))
        if pattern not in _FOLD_PATTERNS or len(node.args) != 1 or node.kwargs:
            continue
        if len(producer.users) > 1 or not norm.track_running_stats:
            continue
        if first.training or norm.training:
            raise AssertionError("Fusion only for eval!")
        if not _foldable(first, norm):
            continue
        folded = _fold(first, norm)
        current[producer] = installs[producer] = folded
        node.replace_all_uses_with(producer)
        graph.erase_node(node)

    graph.lint()
    result = fx.GraphModule(traced, graph)
    renamed = False
    for producer, folded in installs.items():
        target = producer.target
        if target in shared:
            target = fresh_name(target, lambda n: hasattr(result, n))
            producer.target = target
            renamed = True
        _install(result, target, folded)
    if renamed:
        result.recompile()
    return result


def remove_dropout(model: nn.Module) -> nn.Module:
    """Remove every ``nn.Dropout`` module call, wiring its input to its users.

    Args:
        model: the module to transform (traced with ``symbolic_trace``; not modified).

    Returns:
        A ``GraphModule`` without the dropout calls.
    """
    traced = fx.symbolic_trace(model)
    graph = traced.graph
    modules = dict(traced.named_modules())
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Dropout):
            continue
        # nn.Dropout.forward(input) takes exactly one tensor, by position or by keyword.
        operands = [*node.args, *node.kwargs.values()]
        if len(operands) != 1:
            raise AssertionError(f"Expected 1 arg for Dropout, got {len(operands)}")
        node.replace_all_uses_with(operands[0])
        graph.erase_node(node)
    graph.lint()
    return fx.GraphModule(traced, graph)


_DEFAULT_PASS_CONFIG: dict[str, Any] = {
    "conv_bn_fuse": True,
    "remove_dropout": True,
    "mkldnn_layout_optimize": {"heuristic": use_mkl_length},
}


def optimize_for_inference(
    model: torch.nn.Module,
    pass_config: dict[str, Any] | None = None,
    tracer: type[fx.Tracer] = fx.Tracer,
) -> torch.nn.Module:
    """Optimize a float32 CPU model for inference: fold batch norms (:func:`fuse`), remove
    dropout (:func:`remove_dropout`), then run regions of MKLDNN-capable operations in MKLDNN
    layout, converting tensors at the region borders.

    Each region is offered to ``pass_config["mkldnn_layout_optimize"]["heuristic"]``
    (default :func:`use_mkl_length`), which returns whether to keep it in MKLDNN layout.
    Aliasing is not tracked: a model that mutates a tensor it also reads elsewhere may not
    survive the layout change.

    Args:
        model: the module to optimize; it is not modified.
        pass_config: overrides of ``{"conv_bn_fuse": True, "remove_dropout": True,
            "mkldnn_layout_optimize": {"heuristic": use_mkl_length}}``; set
            ``"mkldnn_layout_optimize"`` to False to skip the layout pass.
        tracer: the tracer class for the layout pass.

    Returns:
        The optimized module (``model`` itself when every pass is switched off).

    Raises:
        RuntimeError: ``mkldnn_layout_optimize`` is neither False nor a dict with a
            ``heuristic``.
        AssertionError: an MKLDNN-capable module is not float32 on CPU.
    """
    config = {**_DEFAULT_PASS_CONFIG, **(pass_config or {})}
    if config["conv_bn_fuse"]:
        model = fuse(model)
    if config["remove_dropout"]:
        model = remove_dropout(model)
    layout = config["mkldnn_layout_optimize"]
    if layout is False:
        return model
    if not isinstance(layout, dict):
        raise RuntimeError("mkldnn_layout_optimize config is not a dict")
    if "heuristic" not in layout:
        raise RuntimeError("Heuristic not found in mkldnn_layout_optimize config")
    # fuse returns a deep copy; dropout removal keeps it private (it shares modules with its
    # input only). Without fusion the layout pass copies the model before converting modules.
    return layout_optimize(model, layout["heuristic"], tracer, private=bool(config["conv_bn_fuse"]))
