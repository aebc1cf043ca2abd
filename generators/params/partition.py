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


_FRACTIONS = st.one_of(
    st.sampled_from([0.25, 0.34, 0.5, 0.6, 0.75, 1.0, 1.5]),
    st.floats(0.05, 1.6, allow_nan=False),
)


@st.composite
def devices(draw: st.DrawFn, *, equal: bool | None = None, count: int | None = None) -> list[dict[str, Any]]:
    """Device descriptions: 1 to 5 devices (0 rarely), memory relative to the module's
    size, logical ids usually 0..n-1 (sometimes offset, shuffled or shared)."""
    if count is None:
        count = draw(st.integers(0, 5) if draw(st.integers(0, 19)) == 0 else st.integers(1, 5))
    if equal is None:
        equal = draw(st.booleans())
    shared = draw(_FRACTIONS)
    ids = list(range(count))
    layout = draw(st.sampled_from(["plain", "plain", "offset", "shuffled", "shared"]))
    if layout == "offset":
        ids = [i + 10 for i in ids]
    elif layout == "shuffled":
        ids = draw(st.permutations(ids))
    elif layout == "shared" and count > 1:
        ids[-1] = ids[0]
    out = []
    for i in range(count):
        fraction = shared if equal else draw(_FRACTIONS)
        memory: Any = {"fraction": fraction}
        if draw(st.integers(0, 29)) == 0:
            memory = draw(st.sampled_from([0, 1, 1 << 30]))
        out.append({"name": f"dev_{i}", "memory": memory, "logical_id": ids[i]})
    return out


@st.composite
def latencies(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    """A latency rule over the operations ``names`` (see the module docstring)."""
    factors = st.one_of(st.just(1.0), st.floats(0.1, 10.0, allow_nan=False))
    scale = {}
    if draw(st.booleans()):
        scale = {name: [draw(factors), draw(factors)] for name in names}
    missing: list[str] = []
    if names and draw(st.integers(0, 24)) == 0:
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
    monotone = draw(st.integers(0, 4)) > 0
    for name in names:
        if monotone:
            current += draw(st.integers(0, 4)) == 0
            ids[name] = current
        else:
            ids[name] = draw(st.integers(0, 3))
    used = sorted(set(ids.values()))
    choices = logical_ids or [0]
    to_devices = {str(p): [draw(st.sampled_from(choices))] for p in used}
    if used and draw(st.integers(0, 19)) == 0:
        del to_devices[str(draw(st.sampled_from(used)))]
    return {"node_to_partition": ids, "partition_to_logical_device": to_devices}


@st.composite
def _params(draw: st.DrawFn, graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    names = operation_names(graph_module)
    mode = draw(st.sampled_from(modes_for(graph_module)))
    drawn_devices = draw(devices(equal=True if mode == "sparse_nn" and draw(st.integers(0, 9)) else None))
    params: dict[str, Any] = {
        "mode": mode,
        "devices": drawn_devices,
        "transfer_rate_bytes_per_sec": draw(st.sampled_from([1e2, 1e4, 1e5, 1e6, 1e9, 0.0])),
        "latency": draw(latencies(names)),
        "saturate_host": draw(st.integers(0, 3)) == 0,
    }
    if mode == "aot_based":
        params.update(draw(aot_mappings(names, [d["logical_id"] for d in drawn_devices])))
    return params


def partition_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters of one ``Partitioner.partition_graph`` call on ``graph_module``, including
    configs that must fail (no devices, devices too small, a zero transfer rate where data
    moves, a missing latency, unequal devices in ``sparse_nn``, an aot partition without
    devices)."""
    return _params(graph_module)
