"""The partition row's directed draws: modules of embedding lookups alone, device layouts
that put sparse_nn and kl_based on their corner cases (equal devices none of which holds
the module or its largest operation, uneven devices without room kept for the largest
operation), and short focused searches that reach the known sparse_nn and kl entries."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _reach import search
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.drivers.partition import device_memory
from conform.engine import check, trace
from conform.registry import get
from generators import spec as spec_mod
from generators.params.partition import TIGHT_LAYOUTS, devices, has_embeddings, partition_params
from generators.random_modules import Config, genomes, realize

SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _steps(steps: list) -> Case:
    return Case("factory", {"factory": "conform.witnesses.partition:steps", "kwargs": {"steps": steps}})


DENSE = [["lin", 0], ["relu", 1], ["add", 2, 0], ["lin", 3], ["relu", 4], ["add", 5, 3]]


@pytest.mark.parametrize(("total", "largest", "count"), [(1000, 400, 4), (1000, 600, 2), (300, 290, 8)])
@pytest.mark.parametrize("point", [0.0, 0.5, 1.0])
def test_under_largest_devices_hold_the_module_and_not_its_largest_operation(
        total: int, largest: int, count: int, point: float) -> None:
    memory = device_memory({"under_largest": point}, total, largest, count)
    assert memory < largest
    assert memory * count >= total


def test_under_largest_without_room_for_the_module_stays_under_the_largest_operation() -> None:
    # 3 devices under 300 bytes cannot hold 1000: the devices are too small, not more than asked
    assert device_memory({"under_largest": 0.5}, 1000, 300, 3) == 299


def test_under_largest_of_an_opcode_stays_under_that_opcode_largest_operation() -> None:
    of = {"call_function": 500, "call_module": 900, "call_method": 0}
    spec = {"under_largest": 1.0, "of": "call_function"}
    assert device_memory(spec, 1000, 900, 4, of) == 499
    # no operation of the opcode: the largest operation of any
    assert device_memory({**spec, "of": "call_method"}, 1000, 900, 4, of) == 899


@SETTINGS
@given(devices(layout="none_fits_largest"))
def test_none_fits_largest_layout_is_equal_devices(drawn: list[dict[str, Any]]) -> None:
    assert 3 <= len(drawn) <= 8
    assert len({json_key(d["memory"]) for d in drawn}) == 1
    assert all(set(d["memory"]) <= {"under_largest", "of"} for d in drawn)


@SETTINGS
@given(devices(layout="uneven"))
def test_uneven_layout_keeps_no_room_for_the_largest_operation(drawn: list[dict[str, Any]]) -> None:
    assert 3 <= len(drawn) <= 5
    assert all(set(d["memory"]) == {"fraction"} and 0.3 <= d["memory"]["fraction"] <= 0.8 for d in drawn)


def json_key(memory: dict[str, Any]) -> tuple:
    return tuple(sorted(memory.items()))


def test_tight_sparse_nn_draws_reach_both_corner_layouts_on_a_dense_graph() -> None:
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    seen: set[str] = set()

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(partition_params(gm, mode="sparse_nn"))
    def draw(params: dict[str, Any]) -> None:
        memory = params["devices"][0]["memory"] if params["devices"] else {}
        if "under_largest" in memory:
            seen.add("none_fits_largest")
        elif memory.get("fits_largest") and len(params["devices"]) >= 3:
            seen.add("several")

    draw()
    assert seen == set(TIGHT_LAYOUTS["sparse_nn"]), seen


def test_dense_sparse_nn_on_devices_none_of_which_holds_the_module_is_the_known_divergence() -> None:
    params = {"mode": "sparse_nn", "devices": [
        {"name": f"dev_{i}", "memory": {"fraction": 0.6, "fits_largest": True}, "logical_id": i} for i in range(3)],
        "transfer_rate_bytes_per_sec": 1e5, "saturate_host": False,
        "latency": {"mem_sec_per_byte": 1e-6, "compute_sec_per_byte": 1e-7, "scale": {}, "missing": []}}
    outcomes = check(_steps(DENSE), "partition", params=params)
    assert [o.known_id for o in outcomes] == ["partition-sparse-nn-dense-only"], [o.describe() for o in outcomes]


def test_embedding_tables_plant_a_module_of_embeddings_alone() -> None:
    config = Config(table=(("embedding_tables", 1.0), ("relu", 1.0), ("linear", 1.0)), max_nodes=60,
                    dtypes=("float32",), training=False)
    alone = []

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(genomes(config))
    def draw(genome: dict[str, Any]) -> None:
        spec = realize(genome, config)
        if not spec["nodes"] or spec["nodes"][0]["op"] not in ("embedding", "embedding_bag"):
            return
        gm = trace(spec_mod.build(spec, 0))
        gm.graph.lint()
        ops = [n for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")]
        modules = dict(gm.named_modules())
        assert ops and all(n.op == "call_module" and "Embedding" in type(modules[n.target]).__name__ for n in ops)
        assert has_embeddings(gm)
        alone.append(spec)

    draw()
    assert alone, "no draw began with the pattern"


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "wanted", "examples"), [
    ("sparse_nn", {"partition-sparse-nn-dense-only", "partition-sparse-nn-embeddings-only"}, 150),
])
def test_a_short_focused_search_reaches_the_mode_entries(mode: str, wanted: set[str], examples: int) -> None:
    # the row's focus and parameter rules with the mode fixed: the share of the time a
    # default campaign gives the mode, in a few examples
    def in_mode(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
        return partition_params(graph_module, mode=mode)

    reached = search(get("partition"), wanted, examples=examples, params=in_mode)
    assert wanted <= reached, reached


KL_CHAIN = [["lin", 0], ["mul", 1, 0], ["relu", 2], ["lin", 3], ["add", 2, 2], ["mul", 4, 4]]


def test_kl_based_draws_on_a_small_chain_reach_the_overfull_device() -> None:
    def kl_based(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
        return partition_params(graph_module, mode="kl_based")

    wanted = {"partition-kl-overfull-device"}
    reached = search(get("partition"), wanted, examples=80, case=_steps(KL_CHAIN), params=kl_based)
    assert wanted <= reached, reached


def test_sparse_nn_draws_on_a_small_chain_reach_the_function_too_large() -> None:
    def sparse_nn(graph_module: torch.fx.GraphModule) -> st.SearchStrategy[dict[str, Any]]:
        return partition_params(graph_module, mode="sparse_nn")

    wanted = {"partition-sparse-nn-too-large-typeerror", "partition-sparse-nn-dense-only"}
    reached = search(get("partition"), wanted, examples=80, case=_steps([["relu", 0], ["lin", 1], ["relu", 2]]),
                     params=sparse_nn)
    assert wanted <= reached, reached
