"""Parameters for the accelerator ``Partitioner``: devices, mode and the mode's inputs.

Node sizes are only known once shapes are propagated, which happens when the transform is
applied, so memory and latencies are drawn *relative to sizes* and resolved by the driver
(``conform.drivers.partition``):

* a device's memory is ``{"fraction": f}`` (of the module's total size, rounded down) or a
  number of bytes;
* latencies are ``mem_sec_per_byte * output bytes`` and ``compute_sec_per_byte * total
  bytes`` per operation, each scaled by a per-node factor from ``scale``; operations named
  in ``missing`` get no latency (a config that must fail where latencies are read).

A params dict::

    {"mode": "cost_aware",
     "devices": [{"name": "dev_0", "memory": {"fraction": 0.6}, "logical_id": 0}, ...],
     "transfer_rate_bytes_per_sec": 1e5,
     "latency": {"mem_sec_per_byte": 1e-3, "compute_sec_per_byte": 1e-4,
                 "scale": {"linear": [1.0, 2.5]}, "missing": []},
     "node_to_partition": {"linear": 0, ...},          # aot_based
     "partition_to_logical_device": {"0": [0], ...},   # aot_based
     "saturate_host": false}

The cost-aware and KL searches are slow upstream (whole-graph latency inside nested
loops, and a per-partition latency that walks every path), so those modes are drawn only
for small graphs with few paths; other graphs get the other modes.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

MODES = ("size_based", "sparse_nn", "cost_aware", "kl_based", "aot_based")
#: Upper bounds under which upstream cost_aware / kl_based finish in about a second.
COST_AWARE_MAX_OPS = 12
KL_MAX_OPS = 20
MAX_PATHS = 2000

_UNPARTITIONED = ("placeholder", "get_attr", "output")


def operation_names(graph_module: torch.fx.GraphModule) -> list[str]:
    """Names of the nodes partitions are made of, in graph order."""
    return [n.name for n in graph_module.graph.nodes if n.op not in _UNPARTITIONED]


def count_paths(graph_module: torch.fx.GraphModule) -> int:
    """Number of paths between operations (each operation starts and ends paths), the
    quantity upstream's per-partition latency walk is linear in."""
    ending: dict[torch.fx.Node, int] = {}
    total = 0
    for node in graph_module.graph.nodes:
        if node.op in _UNPARTITIONED:
            continue
        count = 1 + sum(ending.get(source, 0) for source in node.all_input_nodes)
        ending[node] = count
        total += count
    return total


def modes_for(graph_module: torch.fx.GraphModule) -> list[str]:
    """Modes whose upstream cost stays bounded on this graph."""
    ops = len(operation_names(graph_module))
    paths = count_paths(graph_module)
    modes = ["size_based", "sparse_nn", "aot_based"]
    if ops <= COST_AWARE_MAX_OPS and paths <= MAX_PATHS:
        modes.append("cost_aware")
    if ops <= KL_MAX_OPS and paths <= MAX_PATHS:
        modes.append("kl_based")
    return modes


#: How device memory relates to the module's size. ``spread``: the devices together hold the
#: module about 1.1 to 2 times over, none alone (the partitioning modes run); ``fits_one``:
#: one device holds it all (the single-partition path); ``tight``: all devices together
#: cannot hold it; ``free``: each device anything from 5% to 160%; ``none``: no devices.
LAYOUTS = ("spread", "spread", "fits_one", "spread", "free", "tight", "spread", "none")


def _fractions(draw: st.DrawFn, layout: str, count: int, equal: bool) -> list[float]:
    if layout == "fits_one":
        big = draw(st.floats(1.0, 1.6))
        rest = [draw(st.floats(0.05, 1.6)) for _ in range(count - 1)]
        return [big] * count if equal else [big, *rest]
    if layout == "tight":
        share = draw(st.floats(0.2, 0.95)) / count
        return [share] * count
    if layout == "free":
        shared = draw(st.floats(0.05, 1.6))
        return [shared if equal else draw(st.floats(0.05, 1.6)) for _ in range(count)]
    total = draw(st.floats(1.1, 2.0))
    if equal:
        return [min(total / count, 0.95)] * count
    weights = [draw(st.floats(0.5, 1.5)) for _ in range(count)]
    return [min(total * w / sum(weights), 0.95) for w in weights]


@st.composite
def devices(draw: st.DrawFn, *, equal: bool | None = None) -> list[dict[str, Any]]:
    """Device descriptions (see :data:`LAYOUTS`): memory relative to the module's size,
    logical ids usually 0..n-1 (sometimes offset, shuffled or shared by two devices)."""
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "none":
        return []
    count = draw(st.integers(1, 5)) if layout in ("fits_one", "free") else draw(st.integers(2, 5))
    if equal is None:
        equal = draw(st.booleans())
    fractions = _fractions(draw, layout, count, equal)
    ids = list(range(count))
    naming = draw(st.sampled_from(["plain", "offset", "plain", "shuffled", "shared"]))
    if naming == "offset":
        ids = [i + 10 for i in ids]
    elif naming == "shuffled":
        ids = draw(st.permutations(ids))
    elif naming == "shared" and count > 1:
        ids[-1] = ids[0]
    return [
        {"name": f"dev_{i}", "memory": {"fraction": fractions[i]}, "logical_id": ids[i]}
        for i in range(count)
    ]


@st.composite
def latencies(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    """A latency rule over the operations ``names`` (see the module docstring)."""
    factors = st.one_of(st.just(1.0), st.floats(0.1, 10.0, allow_nan=False))
    scale = {}
    if draw(st.booleans()):
        scale = {name: [draw(factors), draw(factors)] for name in names}
    missing: list[str] = []
    if names and draw(st.sampled_from(["complete"] * 9 + ["missing"] + ["complete"] * 10)) == "missing":
        missing = [draw(st.sampled_from(names))]
    return {
        "mem_sec_per_byte": draw(st.sampled_from([1e-6, 1e-5, 1e-3])),
        "compute_sec_per_byte": draw(st.sampled_from([1e-7, 1e-5, 1e-4])),
        "scale": scale,
        "missing": missing,
    }


@st.composite
def aot_mappings(draw: st.DrawFn, names: list[str], logical_ids: list[int]) -> dict[str, Any]:
    """A node-to-partition map (usually monotone in graph order, so acyclic) and each
    partition's devices (rarely one left out, a config that must fail)."""
    ids: dict[str, int] = {}
    current = 0
    monotone = draw(st.sampled_from([True, True, False, True]))
    for name in names:
        if monotone:
            current += draw(st.sampled_from([0, 0, 1, 0]))
            ids[name] = current
        else:
            ids[name] = draw(st.integers(0, 3))
    used = sorted(set(ids.values()))
    choices = logical_ids or [0]
    to_devices = {str(p): [draw(st.sampled_from(choices))] for p in used}
    if used and draw(st.sampled_from(["kept"] * 9 + ["dropped"] + ["kept"] * 10)) == "dropped":
        del to_devices[str(draw(st.sampled_from(used)))]
    return {"node_to_partition": ids, "partition_to_logical_device": to_devices}


@st.composite
def _params(draw: st.DrawFn, graph_module: torch.fx.GraphModule, mode: str | None) -> dict[str, Any]:
    names = operation_names(graph_module)
    if mode is None:
        mode = draw(st.sampled_from(modes_for(graph_module)))
    # sparse_nn requires equal devices; unequal ones (a config that must fail) now and then.
    equal = True if mode == "sparse_nn" and draw(st.sampled_from([True, True, True, False])) else None
    drawn_devices = draw(devices(equal=equal))
    params: dict[str, Any] = {
        "mode": mode,
        "devices": drawn_devices,
        "transfer_rate_bytes_per_sec": draw(st.sampled_from([1e5, 1e2, 1e4, 1e6, 0.0, 1e9])),
        "latency": draw(latencies(names)),
        "saturate_host": draw(st.sampled_from([False, False, True, False])),
    }
    if mode == "aot_based":
        params.update(draw(aot_mappings(names, [d["logical_id"] for d in drawn_devices])))
    return params


def partition_params(
    graph_module: torch.fx.GraphModule, *, mode: str | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters of one ``Partitioner.partition_graph`` call on ``graph_module``, including
    configs that must fail (no devices, devices too small, a zero transfer rate where data
    moves, a missing latency, unequal devices in ``sparse_nn``, an aot partition without
    devices).

    Args:
        graph_module: the traced module.
        mode: one of :data:`MODES`; None draws one of :func:`modes_for` the graph.
    """
    return _params(graph_module, mode)
