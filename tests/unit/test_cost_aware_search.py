"""The reference cost-aware search derives each merge candidate from the current partition
list (``reference._partition_candidates``); it must choose exactly what replaying every
candidate in full chooses (``CostAwareSearch(..., incremental=False)``), which the
reference tests hold to upstream's results. Graphs here are larger than upstream's search
can handle in a test, and configs are drawn to make placements flip: tight devices, shared
logical ids, ties between latencies, odd transfer rates."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.fx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference._partition_candidates as candidates
from reference._partition_candidates import MinIndex
from reference._partition_cost_aware import CostAwareSearch
from reference._partition_index import GraphIndex, unique_devices
from reference.graph_manipulation import get_size_of_all_nodes
from reference.partitioner_utils import Device, NodeLatency

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from _partition_cases import Ops, chain  # noqa: E402

_UNPARTITIONED = ("placeholder", "get_attr", "output")


def _sized(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    gm = torch.fx.symbolic_trace(module)
    get_size_of_all_nodes(gm, list(inputs))
    return gm


def _search(gm: torch.fx.GraphModule, devices: list[Device], rate: float, latency: dict, incremental: bool) -> Any:
    """The search's result (partitions as node index sets, devices, levels, memory) or
    the type of the exception it raised."""
    search = CostAwareSearch(GraphIndex(gm.graph), unique_devices(devices), rate, latency, incremental=incremental)
    try:
        units, placed, levels = search.run()
    except Exception as exc:  # both evaluations must fail alike
        return type(exc)
    return [sorted(u.nodes) for u in units], placed, levels, [u.used_mem for u in units]


@st.composite
def configs(draw: st.DrawFn, max_steps: int, style: str) -> tuple[torch.fx.GraphModule, list[Device], float, dict]:
    """A random DAG of operations, devices, a transfer rate and node latencies (``style``:
    from node sizes, a few small values that make latencies tie, zero, random)."""
    steps: list[tuple[Any, ...]] = []
    for i in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(["lin", "relu", "add", "mul", "lin", "emb"]))
        first = draw(st.integers(max(0, i - draw(st.sampled_from([1, 3, 8]))), i))
        steps.append((kind, first, draw(st.integers(0, i))) if kind in ("add", "mul") else (kind, first))
    width = draw(st.sampled_from([2, 4, 8]))
    torch.manual_seed(0)
    gm = _sized(Ops(steps, width), (torch.randn(2, width),))
    total = sum(n.size_bytes.total_size for n in gm.graph.nodes if n.op != "output")
    count = draw(st.integers(1, 5))
    low, high = draw(st.sampled_from([(0.2, 0.5), (0.5, 1.5), (0.05, 1.2), (0.02, 0.2)]))
    memories = [max(1, int(total * draw(st.floats(low, high)))) for _ in range(count)]
    ids = draw(st.permutations(range(count)))
    if count > 1 and draw(st.booleans()):
        ids[1] = ids[0]  # two devices behind one logical id
    devices = [Device(f"dev_{k}", memories[k], ids[k]) for k in range(count)]
    rng = random.Random(draw(st.integers(0, 2**16)))
    latency = {}
    for node in gm.graph.nodes:
        if node.op in _UNPARTITIONED:
            continue
        if style == "sizes":
            latency[node] = NodeLatency(node.size_bytes.output_size / 1e3, node.size_bytes.total_size / 1e4)
        elif style == "ties":
            latency[node] = NodeLatency(rng.choice([0.0, 1.0, 2.0]), rng.choice([0.0, 1.0, 3.0]))
        elif style == "zero":
            latency[node] = NodeLatency(0.0, 0.0)
        else:
            latency[node] = NodeLatency(rng.random(), rng.random())
    rate = draw(st.sampled_from([1e2, 1e3, 1e5, 7.0, 1.0, 1e9, float("inf"), -5.0, 0.0]))
    return gm, devices, rate, latency


@pytest.mark.parametrize("style", ["sizes", "ties", "zero", "random"])
@pytest.mark.parametrize("max_steps", [12, 30, pytest.param(60, marks=pytest.mark.slow)])
def test_incremental_search_chooses_what_full_replay_chooses(max_steps: int, style: str) -> None:
    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(config=configs(max_steps, style))
    def agree(config: tuple) -> None:
        gm, devices, rate, latency = config
        assert _search(gm, devices, rate, latency, True) == _search(gm, devices, rate, latency, False)

    agree()


@pytest.mark.parametrize("layers", [10, 20, 30])
def test_chain_search_is_incremental_and_matches_full_replay(layers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's workload: a residual chain on 4 devices each holding about half."""
    gm = _sized(*chain(layers))
    total = sum(n.size_bytes.total_size for n in gm.graph.nodes if n.op != "output")
    devices = [Device(f"dev_{i}", total // 2 + 1, i) for i in range(4)]
    latency = {
        n: NodeLatency(n.size_bytes.output_size / 1e3, n.size_bytes.total_size / 1e4)
        for n in gm.graph.nodes
        if n.op not in _UNPARTITIONED
    }
    evaluated = []
    cost = candidates.CandidateEvaluator.cost

    def counting(self: Any, i: int, j: int, best: float) -> float:
        evaluated.append((i, j))
        return cost(self, i, j, best)

    monkeypatch.setattr(candidates.CandidateEvaluator, "cost", counting)
    incremental = _search(gm, devices, 1e2, latency, True)
    assert evaluated, "the incremental evaluation did not run"
    assert incremental == _search(gm, devices, 1e2, latency, False)


def test_fractional_memory_falls_back_to_full_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    gm = _sized(*chain(4))
    total = sum(n.size_bytes.total_size for n in gm.graph.nodes if n.op != "output")
    devices = [Device(f"dev_{i}", total / 2 + 0.5, i) for i in range(3)]
    latency = {n: NodeLatency(1.0, 1.0) for n in gm.graph.nodes if n.op not in _UNPARTITIONED}

    def refuse(*args: Any) -> float:
        raise AssertionError("offsets between walks are inexact with float memory")

    monkeypatch.setattr(candidates.CandidateEvaluator, "cost", refuse)
    assert _search(gm, devices, 1e2, latency, True) == _search(gm, devices, 1e2, latency, False)


@settings(max_examples=60, deadline=None, database=None)
@given(
    values=st.lists(st.sampled_from([0, 1, 2, 5, float("inf")]), min_size=1, max_size=40),
    data=st.data(),
)
def test_min_index_finds_the_first_breaking_position(values: list[float], data: st.DataObject) -> None:
    lo = data.draw(st.integers(0, len(values)))
    hi = data.draw(st.integers(lo, len(values)))
    bound = data.draw(st.sampled_from([0, 1, 2, 3, 5, float("inf")]))
    inclusive = data.draw(st.booleans())
    breaks = [x for x in range(lo, hi) if values[x] < bound or (inclusive and values[x] == bound)]
    assert MinIndex(values).first(lo, hi, bound, inclusive) == (breaks[0] if breaks else hi)
