"""Property: on random graphs and random configs (every mode, drawn by the registry row's
parameter strategy and resolved by its driver), the partitioner agrees with upstream on
everything the ``partition`` fingerprint holds, or both raise the same exception type; and
the module with submodules computes what the module computes.

The fingerprint leaves out what upstream decides by set iteration order (see
``conform.fingerprints.partition``). Graphs for ``cost_aware`` and ``kl_based`` stay small
because upstream's searches are slow.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from _partition_cases import Ops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conform.adapters import Applied, Subject
from conform.drivers.partition import PartitionRun, build_config, kl_order_sensitive, size
from conform.fingerprints.partition import fingerprint
from conform.implementations import Implementation
from generators.params.partition import partition_params

UPSTREAM = Implementation("upstream")
QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
#: Largest graph (in steps) drawn per mode: upstream cost_aware/kl_based are slow.
MAX_STEPS = {"size_based": 14, "sparse_nn": 14, "aot_based": 14, "cost_aware": 7, "kl_based": 10}


@st.composite
def graphs(draw: st.DrawFn, max_steps: int, sparse: bool) -> tuple[list[tuple[Any, ...]], int]:
    """Steps of an :class:`Ops` module (each reads one of the last three values, binary
    steps also any earlier one; embedding bags when ``sparse``) and the tensor width."""
    kinds = ["lin", "relu", "add", "mul", "lin"] + (["emb", "emb"] if sparse else [])
    steps: list[tuple[Any, ...]] = []
    for i in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(kinds))
        first = draw(st.integers(max(0, i - 2), i))
        if kind in ("add", "mul"):
            steps.append((kind, first, draw(st.integers(0, i))))
        else:
            steps.append((kind, first))
    return steps, draw(st.sampled_from([2, 4, 8]))


def _apply(impl: Implementation, module: torch.nn.Module, x: torch.Tensor, params: dict[str, Any]) -> tuple:
    """The fingerprint and the partitioned module, or the exception raised."""
    module = copy.deepcopy(module)
    gm = torch.fx.symbolic_trace(module)
    subject = Subject(module, gm, (x,), {})
    sensitive = params["mode"] == "kl_based" and kl_order_sensitive(subject, params)
    size(impl, subject)
    config = build_config(impl, gm, params)
    partitioner = impl.accelerator_partitioner.Partitioner()
    try:
        result = partitioner.partition_graph(gm, module, config)
    except Exception as exc:
        return exc, None
    run = PartitionRun(impl, partitioner, result, config, gm, params["mode"], sensitive)
    applied = Applied(runnable=result.module_with_submodules, value=run, subject=subject)
    return fingerprint(applied), result.module_with_submodules


@pytest.mark.parametrize("mode", sorted(MAX_STEPS))
def test_agrees_with_upstream(impl: Implementation, mode: str) -> None:
    _check_agreement(impl, mode, examples=12)


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MAX_STEPS))
def test_agrees_with_upstream_at_length(impl: Implementation, mode: str) -> None:
    _check_agreement(impl, mode, examples=150)


def _check_agreement(impl: Implementation, mode: str, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=QUIET, database=None)
    @given(graph=graphs(MAX_STEPS[mode], mode == "sparse_nn"), data=st.data())
    def agrees(graph: tuple, data: st.DataObject) -> None:
        steps, width = graph
        torch.manual_seed(0)
        module, x = Ops(steps, width), torch.randn(2, width)
        params = data.draw(partition_params(torch.fx.symbolic_trace(module), mode=mode), label="params")
        ours, parted = _apply(impl, module, x, params)
        theirs, _ = _apply(UPSTREAM, module, x, params)
        if mode == "sparse_nn" and isinstance(theirs, IndexError | TypeError) and impl.name == "reference":
            # partition-sparse-nn-dense-only / -embeddings-only / -too-large-typeerror:
            # upstream crashes; the reference partitions or raises RuntimeError.
            assert not isinstance(ours, Exception) or isinstance(ours, RuntimeError), repr(ours)
            return
        if isinstance(ours, Exception):
            assert isinstance(theirs, Exception), f"{impl.name} raised {ours!r}, upstream did not"
            assert type(ours) is type(theirs), f"{impl.name} raised {ours!r}, upstream {theirs!r}"
            return
        assert not isinstance(theirs, Exception), f"upstream raised {theirs!r}, {impl.name} did not"
        assert ours == theirs
        torch.testing.assert_close(parted(x), module(x))

    agrees()
