"""Benchmark: reference vs upstream NormalizeArgs and NormalizeOperators.

Times both implementations in one run, on synthetic graphs of 100, 1,000 and 5,000 nodes
(a mix of overloaded torch operators, Python functionals, keyword calls, operator.* calls and
Linear modules, ShapeProp'd so overloads resolve from types) and on the op_db sweep
(``normalize_function`` and NormalizeArgs on a one-call graph for every CPU float32 sample).
Prints one line per workload with the best-of-N seconds of each implementation and the
ratio reference / upstream (below 1: the reference is faster).

    python bench/normalize.py                  # everything
    python bench/normalize.py --sizes 100 1000 --no-opinfo
    python bench/normalize.py --json out.json  # also write the numbers
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import itertools
import json
import operator
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.fx.passes.shape_prop import ShapeProp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conform.implementations import Implementation  # noqa: E402

IMPLEMENTATIONS = ("upstream", "reference")


def synthetic_graph(n_nodes: int) -> tuple[torch.fx.GraphModule, torch.Tensor]:
    """A chain of about ``n_nodes`` calls on 4-element tensors, types recorded by ShapeProp."""
    root = torch.nn.Module()
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    kinds: list[Callable[[torch.fx.Node], torch.fx.Node]] = [
        lambda h: graph.call_function(torch.add, (h, x)),
        lambda h: graph.call_function(torch.mul, (h, 0.5)),
        lambda h: graph.call_function(torch.nn.functional.relu, (h,)),
        lambda h: graph.call_function(torch.clamp, (h,), {"min": -1.0, "max": 1.0}),
        lambda h: graph.call_function(operator.add, (h, x)),
        lambda h: graph.call_function(torch.sub, (h, x), {"alpha": 1}),
        lambda h: graph.call_function(torch.nn.functional.softmax, (h,), {"dim": -1}),
        lambda h: graph.call_function(torch.div, (h, 2.0)),
    ]
    h = x
    for i in range(n_nodes):
        if i % 10 == 9:
            name = f"linear{i}"
            root.add_module(name, torch.nn.Linear(4, 4))
            h = graph.call_module(name, (h,))
        else:
            h = kinds[i % len(kinds)](h)
    graph.output(h)
    gm = torch.fx.GraphModule(root, graph)
    example = torch.randn(4)
    ShapeProp(gm).propagate(example)
    return gm, example


def best_of(repeats: int, runs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Best wall time of each callable over ``repeats`` rounds; the callables alternate
    within a round so that drifting machine load affects them alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            gc.collect()
            gc.disable()  # as timeit does: a collection landing in one run is noise
            try:
                started = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - started)
            finally:
                gc.enable()
    return best


def _transform(cls: type, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    return cls(gm).transform()


def bench_graph_pass(cls_name: str, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        gm, _ = synthetic_graph(size)
        passes = {name: getattr(Implementation(name).normalize, cls_name) for name in IMPLEMENTATIONS}
        runs = {name: functools.partial(_transform, cls, gm) for name, cls in passes.items()}
        rounds = repeats if size < 5000 else max(3, repeats // 2)
        rows.append({"workload": f"{cls_name} {size} nodes", **best_of(rounds, runs)})
    return rows


def opinfo_calls(samples_per_op: int) -> list[tuple[Any, tuple, dict, tuple, dict]]:
    """``(target, args, kwargs, arg_types, kwarg_types)`` for the op_db CPU float32 samples."""
    from torch.fx.operator_schemas import _torchscript_type_to_python_type
    from torch.testing._internal.common_methods_invocations import op_db

    def script_type(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return type(value)
        inferred = torch._C._jit_try_infer_type(value)
        return _torchscript_type_to_python_type(inferred.type()) if inferred.success() else type(value)

    calls = []
    for op in op_db:
        if torch.float32 not in op.supported_dtypes("cpu"):
            continue
        try:
            samples = list(itertools.islice(op.sample_inputs("cpu", torch.float32), samples_per_op))
        except Exception:
            continue
        for s in samples:
            args, kwargs = (s.input, *s.args), dict(s.kwargs)
            calls.append((op.op, args, kwargs, tuple(script_type(a) for a in args),
                          {k: script_type(v) for k, v in kwargs.items()}))
    return calls


def one_call_graph(target: Any, args: tuple, kwargs: dict) -> torch.fx.GraphModule | None:
    """A ShapeProp'd graph calling ``target`` once on the sample, or None when the sample
    cannot be put in a graph or run there."""
    graph = torch.fx.Graph()
    inputs: list[torch.Tensor] = []

    def lift(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            inputs.append(value)
            return graph.placeholder(f"t{len(inputs) - 1}")
        return value

    try:
        lifted_args, lifted_kwargs = pytree.tree_map(lift, (tuple(args), dict(kwargs)))
        graph.output(graph.call_function(target, tuple(lifted_args), dict(lifted_kwargs)))
        gm = torch.fx.GraphModule(torch.nn.Module(), graph)
        ShapeProp(gm).propagate(*copy.deepcopy(inputs))
    except Exception:
        return None
    return gm


def bench_opinfo(samples_per_op: int, repeats: int) -> list[dict[str, Any]]:
    calls = opinfo_calls(samples_per_op)
    graphs = [g for g in (one_call_graph(t, a, k) for t, a, k, _, _ in calls) if g is not None]

    def run_functions(schemas: Any) -> None:
        for target, args, kwargs, arg_types, kwarg_types in calls:
            try:
                schemas.normalize_function(target, args, kwargs, arg_types, kwarg_types)
            except Exception:
                pass

    def run_graphs(normalize: Any) -> None:
        for gm in graphs:
            try:
                normalize.NormalizeArgs(gm).transform()
            except Exception:
                pass

    impls = {name: Implementation(name) for name in IMPLEMENTATIONS}
    for impl in impls.values():
        run_functions(impl.operator_schemas)  # warm the signature caches of both sides alike
    fn_times = best_of(repeats, {n: (lambda i=i: run_functions(i.operator_schemas)) for n, i in impls.items()})
    gm_times = best_of(repeats, {n: (lambda i=i: run_graphs(i.normalize)) for n, i in impls.items()})
    fn_row = {"workload": f"op_db normalize_function ({len(calls)} samples)", **fn_times}
    gm_row = {"workload": f"op_db NormalizeArgs ({len(graphs)} graphs)", **gm_times}
    return [fn_row, gm_row]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples-per-op", type=int, default=3)
    parser.add_argument("--no-opinfo", action="store_true", help="skip the op_db workloads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    rows = []
    for cls_name in ("NormalizeArgs", "NormalizeOperators"):
        rows += bench_graph_pass(cls_name, options.sizes, options.repeats)
    if not options.no_opinfo:
        rows += bench_opinfo(options.samples_per_op, max(1, options.repeats // 2))

    width = max(len(r["workload"]) for r in rows)
    print(f"{'workload':<{width}}  {'upstream s':>11}  {'reference s':>11}  {'ratio':>6}")
    for row in rows:
        row["ratio"] = row["reference"] / row["upstream"]
        print(f"{row['workload']:<{width}}  {row['upstream']:>11.4f}  {row['reference']:>11.4f}  {row['ratio']:>6.2f}")
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
