"""Parameters for the accelerator ``Partitioner``: devices, mode and the mode's inputs.

Node sizes are only known once shapes are propagated, which happens when the transform is
applied, so memory and latencies are drawn *relative to sizes* and resolved by the driver
(``conform.drivers.partition``):

* a device's memory is ``{"fraction": f}`` (of the module's total size, rounded down),
  optionally with ``"fits_largest": true`` (then at least one byte more than the largest
  single operation needs: its total size and its inputs' outputs), or
  ``{"largest_fraction": f}`` (of that largest need), ``{"under_largest": t}`` (a point
  ``t`` of the way from the module's size shared by the devices to one byte less than the
  largest need: together the devices hold the module, none holds its largest operation;
  with ``"of": opcode``, the largest need among operations of that opcode, since partitioners
  report an operation too large by its target, a function, a method name or a module
  path), or a number of bytes;
* latencies are ``mem_sec_per_byte * output bytes`` and ``compute_sec_per_byte * total
  bytes`` per operation, each scaled by a per-node factor from ``scale``; operations named
  in ``missing`` get no latency (a config that must fail where latencies are read).

A params dict::

    {"mode": "cost_aware",
     "devices": [{"name": "dev_0", "memory": {"fraction": 0.6, "fits_largest": true},
                  "logical_id": 0}, ...],
     "transfer_rate_bytes_per_sec": 1e5,
     "latency": {"mem_sec_per_byte": 1e-3, "compute_sec_per_byte": 1e-4,
                 "scale": {"linear": [1.0, 2.5]}, "missing": []},
     "node_to_partition": {"linear": 0, ...},          # aot_based
     "partition_to_logical_device": {"0": [0], ...},   # aot_based
     "saturate_host": false}

Configurations are mostly meant to partition: the simplest draw is one device that holds
the whole module, and five draws in eight give devices that hold the module about twice
over between them, each able to hold the largest operation, which every mode's heuristic
manages with. Two in eight put the heuristics on tight devices (:data:`TIGHT_LAYOUTS`),
where they may fail to place partitions; one in eight fails on purpose, in a way the mode
can fail (:data:`FAILURES`).

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


#: What a draw is meant to do: partition (the first intent, so the simplest draw, and five in
#: eight), partition on tight devices (``tight``, two in eight: the heuristics may fail to
#: place every partition, where upstream's cost-aware, KL and sparse_nn searches misbehave),
#: or fail on purpose.
INTENTS = ("succeed",) * 5 + ("tight", "tight", "fail")
#: The intents of draws whose corner cases are the point: kl_based (its swap search keeps
#: stale placements) and sparse_nn (an embedding or dense group left empty, an operation no
#: device holds): tight devices one time in two.
CORNER_INTENTS = ("succeed", "tight", "tight", "fail")
#: Modes whose heuristics tight devices exercise, and the layouts drawn for them:
#: ``tight`` and ``uneven`` devices for the searches (a swap or merge that no longer fits;
#: kl_based, whose swaps keep stale placements, mostly ``uneven``);
#: for sparse_nn, equal devices none of which holds the module (``several``: its
#: partition-and-combine path, which needs embedding and dense partitions both) or none
#: of which holds the largest operation (``none_fits_largest``).
TIGHT_LAYOUTS = {
    "size_based": ("tight", "uneven"),
    "cost_aware": ("tight", "uneven"),
    "kl_based": ("uneven", "tight", "uneven"),
    "sparse_nn": ("several", "none_fits_largest"),
}
TIGHT_MODES = tuple(TIGHT_LAYOUTS)
#: Ways a configuration fails, per mode: ``no_devices``; ``too_small`` (all devices
#: together hold less than the module); ``op_too_large`` (no device holds the largest
#: operation); ``zero_rate`` (a transfer rate of zero where data crosses devices);
#: ``missing_latency`` (an operation without latency); ``unequal`` (sparse_nn devices of
#: different sizes); ``homeless`` and ``scattered`` (an aot partition without devices, or
#: partition ids not numbered 0, 1, ... in graph order); ``none_fits_largest`` (the devices
#: hold the module together, none holds its largest operation).
FAILURES = {
    "size_based": ("no_devices", "too_small", "op_too_large", "none_fits_largest"),
    "sparse_nn": ("no_devices", "too_small", "op_too_large", "unequal", "none_fits_largest"),
    "cost_aware": ("no_devices", "too_small", "zero_rate", "missing_latency"),
    "kl_based": ("no_devices", "too_small", "op_too_large", "zero_rate", "missing_latency", "none_fits_largest"),
    "aot_based": ("no_devices", "homeless", "scattered"),
}


def has_embeddings(graph_module: torch.fx.GraphModule) -> bool:
    """Whether a ``call_module`` node calls an embedding module (what ``sparse_nn`` keeps
    apart from the dense operations)."""
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            try:
                module = graph_module.get_submodule(str(node.target))
            except AttributeError:
                continue
            if "Embedding" in type(module).__name__:
                return True
    return False


def _spread(draw: st.DrawFn, count: int, equal: bool, total: float) -> list[float]:
    """Fractions of the module's size for ``count`` devices holding ``total`` times the
    module between them (equal, or in random proportions)."""
    if equal:
        return [total / count] * count
    weights = [draw(st.floats(0.5, 1.5)) for _ in range(count)]
    return [total * w / sum(weights) for w in weights]


def _logical_ids(draw: st.DrawFn, count: int) -> list[int]:
    ids = list(range(count))
    naming = draw(st.sampled_from(["plain", "offset", "plain", "shuffled", "shared"]))
    if naming == "offset":
        ids = [i + 10 for i in ids]
    elif naming == "shuffled":
        ids = draw(st.permutations(ids))
    elif naming == "shared" and count > 1:
        ids[-1] = ids[0]
    return ids


#: Device layouts (see :func:`devices`); the last five cannot work.
LAYOUTS = ("spread", "ample", "several", "tight", "uneven", "no_devices", "too_small", "op_too_large", "unequal",
           "none_fits_largest")


@st.composite
def devices(draw: st.DrawFn, *, layout: str = "spread", equal: bool | None = None) -> list[dict[str, Any]]:
    """Device descriptions, memory relative to the module's size (see the module
    docstring), logical ids usually 0..n-1 (sometimes offset, shuffled or shared by two).

    Layouts:

    * ``spread``: the devices hold the module about 1.8 to 2.6 times over between them and
      each holds the largest operation, which every mode's heuristic manages with
      (partitions also hold the inputs they read from elsewhere); one device, the simplest
      draw, holds the whole module;
    * ``ample``: every device holds the whole module (the single-partition path);
    * ``several``: 3 to 5 equal devices as in ``spread``, none holding the whole module,
      so that partitions exchange data;
    * ``tight``: 2 to 5 devices holding the module only 1.05 to 1.5 times over;
    * ``uneven``: 3 to 5 devices of different sizes (0.3 to 0.8 of the module each) with no
      room kept for the largest operation, where a swap or merge can outgrow a device;
    * ``no_devices``; ``too_small`` (together less than the module); ``op_too_large``
      (each smaller than the largest operation); ``unequal`` (different sizes, none
      holding the module); ``none_fits_largest`` (3 to 8 devices of one size that hold the
      module between them, each smaller than the largest operation needs).

    Args:
        layout: one of :data:`LAYOUTS`.
        equal: devices of one size (True), of different sizes (False), or drawn (None).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown device layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "no_devices":
        return []
    if layout == "spread" or layout == "ample":
        count = draw(st.integers(1, 5))
    elif layout == "none_fits_largest":
        count = draw(st.integers(3, 8))
    else:
        count = draw(st.integers(3, 5)) if layout in ("several", "uneven") else draw(st.integers(2, 5))
    if equal is None:
        equal = draw(st.booleans())
    memories: list[dict[str, Any]]
    if layout == "too_small":
        memories = [{"fraction": f} for f in _spread(draw, count, equal, draw(st.floats(0.2, 0.95)))]
    elif layout == "op_too_large":
        memories = [{"largest_fraction": draw(st.floats(0.1, 0.9))} for _ in range(count)]
    elif layout == "none_fits_largest":
        memory: dict[str, Any] = {"under_largest": draw(st.floats(0.0, 1.0))}
        # functions first: upstream's message for an operation too large adds a string to
        # the target, which only a method name or module path is
        of = draw(st.sampled_from(["call_function", None, "call_function", "call_module", "call_method"]))
        if of:
            memory["of"] = of
        memories = [dict(memory) for _ in range(count)]
    elif layout == "uneven":
        memories = [{"fraction": draw(st.floats(0.3, 0.8))} for _ in range(count)]
    elif layout == "unequal":
        memories = [{"fraction": 0.95 - 0.1 * k} for k in range(count)]
    elif layout == "ample":
        size = draw(st.floats(1.0, 1.6))
        memories = [{"fraction": size if equal else draw(st.floats(1.0, 1.6))} for _ in range(count)]
    else:
        over = draw(st.floats(1.05, 1.5)) if layout == "tight" else draw(st.floats(1.8, 2.6))
        fractions = _spread(draw, count, equal or layout == "several", over)
        memories = [{"fraction": f, "fits_largest": True} for f in fractions]
    ids = _logical_ids(draw, count)
    return [{"name": f"dev_{i}", "memory": memories[i], "logical_id": ids[i]} for i in range(count)]


@st.composite
def latencies(draw: st.DrawFn, names: list[str], *, missing: bool = False) -> dict[str, Any]:
    """A latency rule over the operations ``names`` (see the module docstring); with
    ``missing``, one operation has no latency."""
    factors = st.one_of(st.just(1.0), st.floats(0.1, 10.0, allow_nan=False))
    scale = {}
    if draw(st.booleans()):
        scale = {name: [draw(factors), draw(factors)] for name in names}
    return {
        "mem_sec_per_byte": draw(st.sampled_from([1e-6, 1e-5, 1e-3])),
        "compute_sec_per_byte": draw(st.sampled_from([1e-7, 1e-5, 1e-4])),
        "scale": scale,
        "missing": [draw(st.sampled_from(names))] if missing and names else [],
    }


@st.composite
def aot_mappings(draw: st.DrawFn, names: list[str], logical_ids: list[int], *,
                 failure: str | None = None) -> dict[str, Any]:
    """A node-to-partition map, partitions numbered 0, 1, ... in graph order (so acyclic),
    and each partition's devices. ``failure``: ``homeless`` leaves one partition without
    devices, ``scattered`` draws partition ids in any order from 1 (so there is no
    partition 0, and the largest id is past the number of partitions)."""
    ids: dict[str, int] = {}
    current = 0
    for name in names:
        if failure == "scattered":
            ids[name] = draw(st.integers(1, 3))
        else:
            ids[name] = current
            current += draw(st.sampled_from([0, 0, 1, 0]))
    used = sorted(set(ids.values()))
    choices = logical_ids or [0]
    to_devices = {str(p): [draw(st.sampled_from(choices))] for p in used}
    if failure == "homeless" and used:
        del to_devices[str(draw(st.sampled_from(used)))]
    return {"node_to_partition": ids, "partition_to_logical_device": to_devices}


@st.composite
def _params(draw: st.DrawFn, graph_module: torch.fx.GraphModule, mode: str | None, fail: bool | None,
            failure: str | None) -> dict[str, Any]:
    names = operation_names(graph_module)
    embeddings = has_embeddings(graph_module)
    if mode is None:
        modes = modes_for(graph_module)
        # twice as likely: kl_based where the graph is small enough for it (its search has
        # the most ways to go wrong), sparse_nn where there are embeddings (it treats them apart)
        extra = [m for m in ("kl_based",) if m in modes] + (["sparse_nn"] if embeddings else [])
        mode = draw(st.sampled_from([*modes, *extra]))
    corner = mode in ("kl_based", "sparse_nn")
    intents = CORNER_INTENTS if corner else INTENTS
    intent = draw(st.sampled_from(intents)) if fail is None else "fail" if fail else "succeed"
    if intent != "fail":
        failure = None
    elif failure is None:
        failure = draw(st.sampled_from(FAILURES[mode]))
    elif failure not in FAILURES[mode]:
        raise ValueError(f"{mode} has no failure {failure!r}; choose one of {', '.join(FAILURES[mode])}")
    if failure in ("no_devices", "too_small", "op_too_large", "unequal", "none_fits_largest"):
        layout = failure
    elif failure in ("zero_rate", "missing_latency"):
        layout = "several"  # partitions exchange data and read latencies
    elif intent == "tight" and mode in TIGHT_LAYOUTS:
        choices = TIGHT_LAYOUTS[mode]
        if mode == "sparse_nn" and not embeddings:
            choices = ("several", *choices)  # dense partitions alone: the empty embedding group
        layout = draw(st.sampled_from(choices))
    elif mode == "sparse_nn" and not embeddings:
        layout = "ample"  # without embedding operations only a module that fits one device partitions
    else:
        layout = "spread"
    drawn_devices = draw(devices(layout=layout, equal=True if mode == "sparse_nn" else None))
    rates = [0.0] if failure == "zero_rate" else [1e5, 1e2, 1e4, 1e6, 1e9]
    params: dict[str, Any] = {
        "mode": mode,
        "devices": drawn_devices,
        "transfer_rate_bytes_per_sec": draw(st.sampled_from(rates)),
        "latency": draw(latencies(names, missing=failure == "missing_latency")),
        "saturate_host": draw(st.sampled_from([False, False, True, False])),
    }
    if mode == "aot_based":
        aot_failure = failure if failure in ("homeless", "scattered") else None
        params.update(draw(aot_mappings(names, [d["logical_id"] for d in drawn_devices], failure=aot_failure)))
    return params


def partition_params(
    graph_module: torch.fx.GraphModule, *, mode: str | None = None, fail: bool | None = None,
    failure: str | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters of one ``Partitioner.partition_graph`` call on ``graph_module``.

    The simplest draw, and five in eight, is a configuration meant to partition; two in
    eight have tight devices (:data:`TIGHT_LAYOUTS`), and one in eight is drawn to fail
    (:data:`FAILURES`: no devices, devices too small for the module or for its largest
    operation, a zero transfer rate where data moves, a missing latency, unequal devices
    in ``sparse_nn``, aot partitions without devices or out of order). ``kl_based`` and
    ``sparse_nn`` draw tight devices one time in two
    (:data:`CORNER_INTENTS`). ``kl_based`` (where
    :func:`modes_for` allows it) and, on graphs with embedding modules, ``sparse_nn`` are
    drawn twice as often as each other mode.

    Args:
        graph_module: the traced module.
        mode: one of :data:`MODES`; None draws one of :func:`modes_for` the graph.
        fail: whether the configuration is drawn to fail (False: meant to partition, on
            devices that are not tight); None draws the intent (:data:`INTENTS`).
        failure: when failing, which way (one of the mode's :data:`FAILURES`); None draws it.
    """
    return _params(graph_module, mode, fail, failure)
