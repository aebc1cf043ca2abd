"""How a standalone repro calls each upstream transform: one snippet per registry row.

Each snippet is Python that imports the upstream transform and defines
``apply(module, graph_module, args, kwargs) -> (runnable, value)``, calling the transform
exactly as the row's driver does (``conform/drivers``, ``conform/adapters``) for the recorded
parameters, which are written into the script as literals. ``runnable`` is what the output
checks execute, ``value`` what the row's structural description reads.

A snippet also names the fingerprint function a structural check copies into the script
(:mod:`conform.bugs.inline`), or a hand-written description when the row's fingerprint
reads objects that exist only inside fx-conform.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable
from typing import Any

from conform.case import Case


@dataclasses.dataclass
class Snippet:
    """What a row contributes to a repro script.

    Args:
        imports: import lines of the upstream transform.
        code: module-level code defining ``apply`` (and the constants it reads).
        traced: ``apply`` reads ``graph_module`` (the script traces the case first).
        fingerprint: ``(module, function)`` of the fingerprint to copy for structural
            checks, or None.
        structure: extra code defining ``structure(applied)`` when the fingerprint cannot
            be copied as it is; ``helpers`` are the ``(module, name)`` definitions it uses.
        requires: ``(module, name)`` definitions ``apply`` itself uses, copied into every
            script.
    """

    imports: list[str]
    code: str
    traced: bool = True
    fingerprint: tuple[str, str] | None = None
    structure: str | None = None
    helpers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    requires: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class Unsupported(Exception):
    """No standalone snippet for this row and these parameters."""


def literal(value: Any) -> str:
    """A Python literal for a JSON-able value."""
    return repr(json.loads(json.dumps(value)))


def _dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def _split(params: dict[str, Any], case: Case) -> Snippet:
    options = dict(params)
    partition = options.pop("partition", {})
    return Snippet(
        ["from torch.fx.passes.split_module import split_module"],
        _dedent(f"""
            # node name -> partition id; nodes not named go to partition 0
            PARTITION = {literal(partition)}
            OPTIONS = {literal(options)}


            def apply(module, graph_module, args, kwargs):
                qualname_map = {{}}
                parent = split_module(graph_module, module, lambda node: PARTITION.get(node.name, 0),
                                      qualname_map, **OPTIONS)
                return parent, {{"module": parent, "qualname_map": qualname_map}}
        """),
        fingerprint=("conform.fingerprints.split", "fingerprint"),
    )


def _in_place(call: str, imports: str, fingerprint: tuple[str, str] | None) -> Callable[..., Snippet]:
    def make(params: dict[str, Any], case: Case) -> Snippet:
        return Snippet(
            [imports],
            _dedent(f"""
                PARAMS = {literal(params)}


                def apply(module, graph_module, args, kwargs):
                    value = {call}
                    return graph_module, value
            """),
            fingerprint=fingerprint,
        )
    return make


def _transformer(name: str, imports: str, *, shape_prop: bool = False) -> Callable[..., Snippet]:
    def make(params: dict[str, Any], case: Case) -> Snippet:
        lines = ["from torch.fx.passes.shape_prop import ShapeProp"] if shape_prop else []
        prop = "    ShapeProp(graph_module).propagate(*copy.deepcopy(args))\n" if shape_prop else ""
        return Snippet(
            [imports, *lines],
            f"PARAMS = {literal(params)}\n\n\n"
            "def apply(module, graph_module, args, kwargs):\n"
            f"{prop}"
            f"    result = {name}(graph_module, **PARAMS).transform()\n"
            "    return result, result\n",
            fingerprint=("conform.fingerprints.normalize", "fingerprint"),
        )
    return make


def _traces(name: str, imports: str, fingerprint: tuple[str, str]) -> Callable[..., Snippet]:
    def make(params: dict[str, Any], case: Case) -> Snippet:
        return Snippet(
            [imports],
            f"PARAMS = {literal(params)}\n\n\n"
            "def apply(module, graph_module, args, kwargs):\n"
            f"    result = {name}(module, **PARAMS)\n"
            "    return result, result\n",
            traced=False,
            fingerprint=fingerprint,
        )
    return make


def _rewrite(params: dict[str, Any], case: Case) -> Snippet:
    return Snippet(
        ["from torch.fx.experimental.rewriter import RewritingTracer"],
        _dedent(f"""
            PARAMS = {literal(params)}


            def apply(module, graph_module, args, kwargs):
                tracer = RewritingTracer(**PARAMS)
                graph = tracer.trace(module)
                return torch.fx.GraphModule(tracer.root, graph, type(module).__name__), graph
        """),
        traced=False,
        fingerprint=("conform.fingerprints.normalize", "traced_graph"),
    )


def _meta_trace(params: dict[str, Any], case: Case) -> Snippet:
    return Snippet(
        ["import inspect", "from torch.fx.experimental.meta_tracer import MetaTracer"],
        _dedent(f"""
            PARAMS = {literal(params)}


            def apply(module, graph_module, args, kwargs):
                # every tensor argument of forward, by name, as a meta tensor
                bound = inspect.signature(module.forward).bind(*args, **kwargs)
                meta_args = {{name: value.to(device="meta") for name, value in bound.arguments.items()
                             if isinstance(value, torch.Tensor)}}
                tracer = MetaTracer(**PARAMS)
                graph = tracer.trace(module, meta_args)
                return torch.fx.GraphModule(tracer.root, graph, type(module).__name__), graph
        """),
        traced=False,
    )


_HEURISTICS = {
    "length": "optimization.use_mkl_length",
    "always": "lambda subgraph: True",
    "never": "lambda subgraph: False",
    "autotune": "optimization.gen_mkl_autotuner(list(args), iters=1, warmup=0)",
}


def _optimize(params: dict[str, Any], case: Case) -> Snippet:
    layout = params.get("mkldnn", "length")
    if layout != "off" and layout not in _HEURISTICS:
        raise Unsupported(f"unknown mkldnn heuristic {layout!r}")
    heuristic = "False" if layout == "off" else f'{{"heuristic": {_HEURISTICS[layout]}}}'
    return Snippet(
        ["import torch.fx.experimental.optimization as optimization"],
        _dedent(f"""
            class InputModified(AssertionError):
                \"\"\"optimize_for_inference changed the module it was given (it must work on a copy).\"\"\"


            def run_seeded(module, args, kwargs):
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(0)
                    return module(*copy.deepcopy(args), **copy.deepcopy(kwargs))


            def apply(module, graph_module, args, kwargs):
                pass_config = {{
                    "conv_bn_fuse": {params.get("conv_bn_fuse", True)!r},
                    "remove_dropout": {params.get("remove_dropout", True)!r},
                    "mkldnn_layout_optimize": {heuristic},
                }}
                before = run_seeded(module, args, kwargs)
                classes_before = [(name, type(m).__name__) for name, m in module.named_modules()]
                result = optimization.optimize_for_inference(module, pass_config)
                classes_after = [(name, type(m).__name__) for name, m in module.named_modules()]
                if classes_after != classes_before:
                    changed = sorted(set(classes_after) - set(classes_before))
                    raise InputModified(f"optimize_for_inference replaced submodules of its input: {{changed}}")
                try:
                    after = run_seeded(module, args, kwargs)
                except Exception as exc:
                    raise InputModified(f"afterwards the input module raises {{type(exc).__name__}}: {{exc}}") from exc
                try:
                    torch.testing.assert_close(after, before, equal_nan=True)
                except AssertionError as exc:
                    raise InputModified(f"afterwards the input module computes otherwise: {{exc}}") from exc
                return result, result
        """),
        traced=False,
        fingerprint=("conform.fingerprints.optimization", "modules"),
    )


def _validator(params: dict[str, Any], case: Case) -> Snippet:
    return Snippet(
        ["import sympy", "from torch.fx.experimental import validator"],
        _dedent(f"""
            EXPR = {literal(params["expr"])}


            class TranslationMismatch(AssertionError):
                \"\"\"The z3 term of an expression disagrees with what Python computes.\"\"\"


            def apply(module, graph_module, args, kwargs):
                # one integer symbol per input size, pinned to the case's sizes
                sizes = [int(s) for leaf in torch.utils._pytree.tree_leaves((args, kwargs))
                         if isinstance(leaf, torch.Tensor) for s in leaf.shape]
                symbols = [sympy.Symbol(f"s{{i}}", integer=True, positive=size > 0) for i, size in enumerate(sizes)]
                expr = _build(EXPR, symbols)
                value = expr.subs(dict(zip(symbols, map(sympy.Integer, sizes))))
                used = sorted(expr.free_symbols, key=lambda s: s.name)
                pinned = {{s: sympy.Integer(sizes[symbols.index(s)]) for s in used}}

                def check(guard):
                    tv = validator.TranslationValidator()
                    for symbol in used:
                        tv.add_var(symbol, int)
                    term = validator.SympyToZ3(tv).run(guard)
                    tv.add_source_expr(term)
                    for symbol, size in pinned.items():
                        tv.add_target_expr(sympy.Eq(symbol, size))
                    try:
                        tv.validate()
                    except validator.ValidationException as failure:
                        return term, failure
                    return term, None

                term, failure = check(sympy.Eq(expr, value, evaluate=False))
                where = ", ".join(f"{{s}}={{v}}" for s, v in pinned.items())
                if failure is not None:
                    raise TranslationMismatch(f"z3 says {{expr}} != {{value}} at {{where}}; the term is {{term}}")
                if used:
                    _, refuted = check(sympy.Ne(expr, value, evaluate=False))
                    if refuted is None:
                        raise TranslationMismatch(f"z3 accepts {{expr}} != {{value}} at {{where}} too; the term is {{term}}")
                return None, {{"term": f"{{expr}} -> {{term}}", "value": int(value)}}
        """),
        traced=False,
        structure="def structure(applied):\n    return applied.value\n",
        requires=[("conform.drivers.optimization", "_build")],
    )


def _partition(params: dict[str, Any], case: Case) -> Snippet:
    from conform import engine
    from conform.drivers.partition import build_config
    from conform.implementations import Implementation

    prepared = engine.prepare(case)
    if not isinstance(prepared, engine.Prepared) or prepared.built.kwargs:
        raise Unsupported("the case does not build, trace and size")
    upstream = Implementation("upstream")
    gm = engine.Subject(prepared.built.module, prepared.graph_module, prepared.built.args, {}).clone().graph_module
    upstream.graph_manipulation.get_size_of_all_nodes(gm, list(prepared.built.args))
    config = build_config(upstream, gm, params)
    devices = [[d.name, int(d.available_mem_bytes), int(d.logical_id)] for d in config.devices]
    latency = {n.name: [v.mem_latency_sec, v.computer_latency_sec] for n, v in config.node_to_latency_mapping.items()}
    placed = {n.name: int(v) for n, v in config.node_to_partition_mapping.items()}
    return Snippet(
        ["from torch.fx.experimental.accelerator_partitioner import Partitioner",
         "from torch.fx.experimental.partitioner_utils import Device, NodeLatency, PartitionerConfig, PartitionMode",
         "from torch.fx.passes.graph_manipulation import get_size_of_all_nodes"],
        _dedent(f"""
            # [name, available_mem_bytes, logical_id]
            DEVICES = {literal(devices)}
            # node name -> [mem_latency_sec, computer_latency_sec]
            LATENCY = {literal(latency)}
            NODE_TO_PARTITION = {literal(placed)}
            PARTITION_TO_LOGICAL_DEVICE = {literal({str(k): v for k, v in config.partition_to_logical_device_mapping.items()})}


            def apply(module, graph_module, args, kwargs):
                get_size_of_all_nodes(graph_module, list(args))
                nodes = {{n.name: n for n in graph_module.graph.nodes}}
                config = PartitionerConfig(
                    devices=[Device(*d) for d in DEVICES],
                    mode=PartitionMode.{config.mode.name},
                    transfer_rate_bytes_per_sec={float(config.transfer_rate_bytes_per_sec)!r},
                    node_to_latency_mapping={{nodes[k]: NodeLatency(*v) for k, v in LATENCY.items()}},
                    node_to_partition_mapping={{nodes[k]: v for k, v in NODE_TO_PARTITION.items()}},
                    partition_to_logical_device_mapping={{int(k): v for k, v in PARTITION_TO_LOGICAL_DEVICE.items()}},
                    saturate_host={bool(config.saturate_host)!r},
                )
                partitioner = Partitioner()
                result = partitioner.partition_graph(graph_module, module, config)
                return result.module_with_submodules, {{"partitioner": partitioner, "result": result, "config": config}}
        """),
        structure=_dedent(f"""
            def structure(applied):
                partitioner, result = applied.value["partitioner"], applied.value["result"]
                return {{
                    "mode": {config.mode.name!r},
                    "node_to_partition": {{n.name: pid for n, pid in sorted(partitioner.node_to_partition.items(),
                                                                       key=lambda kv: kv[0].name)}},
                    "submodules": describe_split(result.module_with_submodules),
                    "partitions": describe_partitions(partitioner.partitions),
                    "dag": describe_dag(result.dag),
                }}
        """),
        helpers=[("conform.fingerprints.split", "describe_split"),
                 ("conform.fingerprints.partition", "describe_partitions"),
                 ("conform.fingerprints.partition", "describe_dag")],
    )


SNIPPETS: dict[str, Callable[[dict[str, Any], Case], Snippet]] = {
    "split_module": _split,
    "shape_prop": _in_place("ShapeProp(graph_module, **PARAMS).propagate(*copy.deepcopy(args))",
                            "from torch.fx.passes.shape_prop import ShapeProp",
                            ("conform.fingerprints.shapes", "fingerprint")),
    "graph_manipulation": _in_place("get_size_of_all_nodes(graph_module, list(args), **PARAMS)",
                                    "from torch.fx.passes.graph_manipulation import get_size_of_all_nodes",
                                    ("conform.fingerprints.graph_utils", "sizes")),
    "param_fetch": _in_place("lift_lowering_attrs_to_nodes(graph_module, **PARAMS)",
                             "from torch.fx.passes.param_fetch import lift_lowering_attrs_to_nodes",
                             ("conform.fingerprints.graph_utils", "lowering_attrs")),
    "annotate_getitem_nodes": _in_place("annotate_getitem_nodes(graph_module.graph, **PARAMS)",
                                        "from torch.fx.passes.annotate_getitem_nodes import annotate_getitem_nodes",
                                        ("conform.fingerprints.graph_utils", "getitem_types")),
    "normalize_args": _transformer("NormalizeArgs", "from torch.fx.experimental.normalize import NormalizeArgs"),
    "normalize_args_typed": _transformer("NormalizeArgs", "from torch.fx.experimental.normalize import NormalizeArgs",
                                         shape_prop=True),
    "normalize_operators": _transformer("NormalizeOperators",
                                        "from torch.fx.experimental.normalize import NormalizeOperators"),
    "annotate_types": _transformer("AnnotateTypesWithSchema",
                                   "from torch.fx.experimental.schema_type_annotation import AnnotateTypesWithSchema"),
    "rewrite": _rewrite,
    "meta_trace": _meta_trace,
    "fuse": _traces("fuse", "from torch.fx.experimental.optimization import fuse",
                    ("conform.fingerprints.optimization", "modules")),
    "remove_dropout": _traces("remove_dropout", "from torch.fx.experimental.optimization import remove_dropout",
                              ("conform.fingerprints.optimization", "modules")),
    "merge_matmul": _traces("merge_matmul", "from torch.fx.experimental.merge_matmul import merge_matmul",
                            ("conform.fingerprints.optimization", "merged_matmuls")),
    "optimize_for_inference": _optimize,
    "validator": _validator,
    "partition": _partition,
}


def snippet(transform: str, params: dict[str, Any], case: Case) -> Snippet:
    """The snippet of ``transform`` for ``params``; :class:`Unsupported` when there is none."""
    if transform not in SNIPPETS:
        raise Unsupported(f"no standalone snippet for the transform {transform!r}")
    return SNIPPETS[transform](params, case)
