"""The ``partition`` registry row: parameter strategy, driver and fingerprint, end to end
through the engine."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from conform.adapters import NotApplicable, Subject
from conform.case import Case
from conform.drivers.partition import drive
from conform.engine import check
from conform.fingerprints.partition import critical_split_is_unique
from conform.implementations import Implementation
from conform.oracles.partition_z3 import summarize_gaps
from conform.outcome import Verdict
from conform.registry import get
from conform.witnesses.partition import Steps
from generators.params.partition import (
    COST_AWARE_MAX_OPS,
    FAILURES,
    MODES,
    count_paths,
    modes_for,
    partition_params,
)

CHAIN = [["lin", 0], ["relu", 1], ["add", 2, 0], ["lin", 3], ["relu", 4], ["add", 5, 3], ["lin", 6]]


def _case(steps: list) -> Case:
    return Case("factory", {"factory": "conform.witnesses.partition:steps", "kwargs": {"steps": steps}})


def _params(mode: str, **extra: object) -> dict:
    params = {
        "mode": mode,
        "devices": [{"name": f"dev_{i}", "memory": {"fraction": 0.45}, "logical_id": i} for i in range(4)],
        "transfer_rate_bytes_per_sec": 1e3,
        "latency": {"mem_sec_per_byte": 1e-3, "compute_sec_per_byte": 1e-4, "scale": {}, "missing": []},
        "saturate_host": False,
    }
    params.update(extra)
    return params


@pytest.mark.parametrize("mode", ["size_based", "cost_aware", "kl_based"])
def test_engine_passes_a_chain(mode: str) -> None:
    outcomes = check(_case(CHAIN), "partition", params=_params(mode))
    assert [o.verdict for o in outcomes] == [Verdict.PASS], [o.describe() for o in outcomes]


def test_engine_passes_aot_and_saturate_host() -> None:
    names = ["lins_0", "relu", "add", "lins_1", "relu_1", "add_1", "lins_2"]
    params = _params(
        "aot_based",
        node_to_partition={name: i // 3 for i, name in enumerate(names)},
        partition_to_logical_device={"0": [0], "1": [1], "2": [2]},
        saturate_host=True,
    )
    outcomes = check(_case(CHAIN), "partition", params=params)
    assert [o.verdict for o in outcomes] == [Verdict.PASS], [o.describe() for o in outcomes]


def test_engine_reports_matching_errors_as_pass() -> None:
    outcomes = check(_case(CHAIN), "partition", params=_params("cost_aware", transfer_rate_bytes_per_sec=0.0))
    assert [o.verdict for o in outcomes] == [Verdict.PASS]
    assert outcomes[0].message == "both implementations raise ZeroDivisionError"


def test_fingerprint_holds_what_the_partitioner_promises() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
    gm = torch.fx.symbolic_trace(module)
    params = _params("size_based")
    for device in params["devices"]:
        device["memory"] = {"fraction": 0.6}
    applied = drive(Implementation("reference"), get("partition"), Subject(module, gm, (torch.randn(2, 4),), {}),
                    params)
    summary = get("partition").load_fingerprint()(applied)
    assert set(summary) == {"mode", "node_to_partition", "submodules", "partitions", "dag", "latencies"}
    assert [p["nodes"] for p in summary["partitions"]] == [["_0", "input_1"], ["_1"], ["_2"]]
    assert summary["latencies"]["critical_path"] > 0
    json.dumps(summary)


def test_driver_needs_positional_inputs() -> None:
    module = torch.nn.Linear(4, 4)
    gm = torch.fx.symbolic_trace(module)
    subject = Subject(module, gm, (), {"input": torch.randn(2, 4)})
    with pytest.raises(NotApplicable):
        drive(Implementation("reference"), get("partition"), subject, _params("size_based"))


class _TwoBranches(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) + torch.sigmoid(x)


@pytest.mark.parametrize(("latencies", "unique"), [([(1.0, 2.0), (2.0, 1.0)], False), ([(1.0, 2.0), (1.0, 2.5)], True)])
def test_tied_critical_paths_are_recognised(latencies: list, unique: bool) -> None:
    from reference.partitioner_utils import NodeLatency

    gm = torch.fx.symbolic_trace(_TwoBranches())
    ops = [n for n in gm.graph.nodes if n.op == "call_function"]
    latency = {ops[0]: NodeLatency(*latencies[0]), ops[1]: NodeLatency(*latencies[1]), ops[2]: NodeLatency(0.5, 0.5)}
    assert critical_split_is_unique(set(ops), latency) is unique


def test_slow_modes_only_on_small_graphs() -> None:
    small = torch.fx.symbolic_trace(torch.nn.Sequential(*[torch.nn.ReLU()] * 3))
    big = torch.fx.symbolic_trace(torch.nn.Sequential(*[torch.nn.ReLU()] * (COST_AWARE_MAX_OPS + 1)))
    assert "cost_aware" in modes_for(small) and "cost_aware" not in modes_for(big)
    assert count_paths(small) == 6  # 3 nodes, 2 edges: 3 + 2 + 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_params_are_json_and_well_formed(data: st.DataObject) -> None:
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    params = data.draw(partition_params(gm))
    assert json.loads(json.dumps(params)) == params
    assert params["mode"] in modes_for(gm)
    for device in params["devices"]:
        assert set(device) == {"name", "memory", "logical_id"}
    if params["mode"] == "aot_based":
        assert set(params["node_to_partition"]) == {"_0", "_1"}


def _chain_module() -> torch.fx.GraphModule:
    return torch.fx.symbolic_trace(Steps(CHAIN))


@pytest.mark.parametrize("mode", MODES)
def test_simplest_params_partition(mode: str) -> None:
    """Hypothesis starts every run from its simplest draw (every choice at its simplest
    value): that draw must partition, or each campaign batch begins with a configuration
    that cannot work."""
    drawn: list[dict] = []

    @settings(max_examples=1, phases=[Phase.generate], database=None)
    @given(params=partition_params(_chain_module(), mode=mode))
    def first(params: dict) -> None:
        drawn.append(params)

    first()
    assert drawn[0]["devices"] and drawn[0]["transfer_rate_bytes_per_sec"] > 0
    outcomes = check(_case(CHAIN), "partition", params=drawn[0])
    assert [(o.verdict, o.message) for o in outcomes] == [(Verdict.PASS, "")], [o.describe() for o in outcomes]


@pytest.mark.parametrize("mode", MODES)
def test_params_drawn_to_succeed_partition(mode: str) -> None:
    @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(params=partition_params(_chain_module(), mode=mode, fail=False))
    def partitions(params: dict) -> None:
        outcomes = check(_case(CHAIN), "partition", params=params)
        assert [(o.verdict, o.message) for o in outcomes] == [(Verdict.PASS, "")], [o.describe() for o in outcomes]

    partitions()


@pytest.mark.parametrize(("mode", "failure"), [(m, f) for m in MODES for f in FAILURES[m]])
def test_params_drawn_to_fail_fail(mode: str, failure: str) -> None:
    @settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(params=partition_params(_chain_module(), mode=mode, fail=True, failure=failure))
    def fails(params: dict) -> None:
        outcomes = check(_case(CHAIN), "partition", params=params)
        # Both sides raise (a known divergence may name different exception types).
        assert all(o.message.startswith("both") and "raise" in o.message for o in outcomes), [
            o.describe() for o in outcomes
        ]

    fails()


def test_unknown_failure_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of no_devices, too_small, op_too_large"):
        find(partition_params(_chain_module(), mode="size_based", fail=True, failure="unequal"), lambda _: True)


def test_outcome_notes_carry_the_optimality_gap() -> None:
    """The driver leaves the z3 oracle's record in the reference side's notes; on a graph
    of at most 12 operations the optimum, hence the gap, is computed."""
    outcomes = check(_case(CHAIN), "partition", params=_params("size_based"))
    assert [o.verdict for o in outcomes] == [Verdict.PASS]
    record = outcomes[0].notes["reference"]["partition_oracle"]
    assert record["status"] == "optimal" and record["violations"] == []
    assert record["gap"] == record["heuristic_latency"] - record["optimal_latency"]
    assert record["gap"] >= -1e-12 * record["optimal_latency"]
    assert record["relative_gap"] == pytest.approx(record["gap"] / record["optimal_latency"])


def test_gap_summary_per_mode() -> None:
    outcomes = [o for mode in ("size_based", "cost_aware") for o in check(_case(CHAIN), "partition", params=_params(mode))]
    failing = check(_case(CHAIN), "partition", params=_params("size_based", devices=[]))
    rows = [o.to_json() for o in outcomes + failing] + [{"transform": "split_module", "notes": {}}]
    summary = summarize_gaps(rows)
    assert set(summary) == {"size_based", "cost_aware"}
    for mode, outcome in zip(("size_based", "cost_aware"), outcomes):
        gap = outcome.notes["reference"]["partition_oracle"]["relative_gap"]
        assert summary[mode] == {
            "checked": 1, "count": 1, "median_relative_gap": gap, "max_relative_gap": gap, "statuses": {"optimal": 1},
        }
    assert summarize_gaps(outcomes) == summary  # Outcome objects as well as their dicts
