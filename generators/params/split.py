"""Parameters for ``split_module``: a partition map over the graph's computing nodes and the
three layout options.

A partition map is JSON-able (``{node_name: partition_id}``); the engine turns it back into a
callback. Three shapes of map are drawn, because they exercise different code:

* ``monotone``: ids never decrease along the graph (the shape partitioners produce; always
  acyclic, and the only shape allowed with autocast/grad regions);
* ``random``: every node gets an independent id (often cyclic between partitions);
* ``cyclic``: ids go round-robin ``0, 1, ..., k-1, 0, ...`` (the upstream docs' example;
  cyclic whenever one partition feeds a later node of an earlier one).

On a graph with a grad-mode or autocast region (``_set_grad_enabled``, ``_enter_autocast``
nodes), where upstream checks partition ids and names partitions specially, the map's ids
may also start below zero and a ``partition_affix`` may be drawn.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

_UNPARTITIONED = ("placeholder", "get_attr", "output")


def computing_node_names(graph_module: torch.fx.GraphModule) -> list[str]:
    """Names of the nodes a split callback is asked about, in graph order."""
    return [n.name for n in graph_module.graph.nodes if n.op not in _UNPARTITIONED]


@st.composite
def _monotone(draw: st.DrawFn, names: list[str], partitions: int) -> dict[str, int]:
    if not names:
        return {}
    # choose where each new partition starts; ids may skip values (0, 2, 5, ...)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(names) - 1)), max_size=partitions - 1)))
    ids = draw(st.lists(st.integers(0, 3), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    out: dict[str, int] = {}
    current, bound = 0, [*cuts, len(names)]
    pid = ids[0]
    for index, name in enumerate(names):
        while index >= bound[current]:
            current += 1
            pid += 1 + ids[current]
        out[name] = pid
    return out


@st.composite
def _random(draw: st.DrawFn, names: list[str], partitions: int) -> dict[str, int]:
    ids = draw(st.lists(st.integers(0, partitions - 1), min_size=len(names), max_size=len(names)))
    return dict(zip(names, ids))


@st.composite
def _cyclic(draw: st.DrawFn, names: list[str], partitions: int) -> dict[str, int]:
    offset = draw(st.integers(0, partitions - 1))
    return {name: (index + offset) % partitions for index, name in enumerate(names)}


def partition_maps(
    graph_module: torch.fx.GraphModule, *, kind: str | None = None, partitions: int | None = None
) -> st.SearchStrategy[dict[str, int]]:
    """Partition maps over ``graph_module``'s computing nodes.

    Args:
        graph_module: the traced module to split.
        kind: ``"monotone"``, ``"random"`` or ``"cyclic"``; None draws one.
        partitions: how many partitions at most; None draws 1 to 4.
    """
    names = computing_node_names(graph_module)
    builders = {"monotone": _monotone, "random": _random, "cyclic": _cyclic}
    kinds = st.sampled_from(sorted(builders)) if kind is None else st.just(kind)
    counts = st.integers(1, 4) if partitions is None else st.just(partitions)
    return st.tuples(kinds, counts).flatmap(lambda kc: builders[kc[0]](names, kc[1]))


#: Calls that open or close a grad-mode or autocast region.
REGION_CALLS = (torch._C._set_grad_enabled, torch.amp._enter_autocast, torch.amp._exit_autocast)


def has_regions(graph_module: torch.fx.GraphModule) -> bool:
    """Whether the graph switches grad mode or autocast."""
    return any(n.op == "call_function" and n.target in REGION_CALLS for n in graph_module.graph.nodes)


def _shifted(assignment: dict[str, int], offset: int) -> dict[str, int]:
    return {name: pid + offset for name, pid in assignment.items()}


def split_params(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters of one ``split_module`` application: ``partition`` (node name -> id) and
    the ``keep_original_order``, ``keep_original_node_name`` and ``keep_original_input_name``
    flags; on a graph with regions, ids from -3 up and sometimes a ``partition_affix``."""
    maps = partition_maps(graph_module)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    if has_regions(graph_module):
        maps = st.tuples(maps, st.integers(-3, 0)).map(lambda mo: _shifted(*mo))
        optional["partition_affix"] = st.just("pp")
    return st.fixed_dictionaries(
        {
            "partition": maps,
            "keep_original_order": st.booleans(),
            "keep_original_node_name": st.booleans(),
            "keep_original_input_name": st.booleans(),
        },
        optional=optional,
    )
