"""Property: for random modules and random partition maps (monotone, random, cyclic), a split
computes what the module computes, and reference and upstream agree on the structure, or
both raise the same exception type."""

from __future__ import annotations

import pytest
import torch
from _graph_util_specs import build, specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conform.fingerprints.split import describe_split
from conform.implementations import Implementation
from generators.params.split import partition_maps, split_params

UPSTREAM = Implementation("upstream")
QUIET = [HealthCheck.too_slow]


def _apply(impl: Implementation, gm: torch.fx.GraphModule, root: torch.nn.Module, params: dict):
    options = dict(params)
    assignment = options.pop("partition")
    qualname_map: dict[str, str] = {}
    try:
        parts = impl.split_module.split_module(
            gm, root, lambda n: assignment.get(n.name, 0), qualname_map, **options
        )
    except Exception as exc:
        return None, exc
    summary = describe_split(parts)
    summary["qualname_map"] = qualname_map
    return parts, summary


@pytest.mark.parametrize("keep_original_order", [False, True])
def test_split_agrees_with_eager_and_upstream(impl: Implementation, keep_original_order: bool) -> None:
    # the property runs inside the test so hypothesis never sees the fixture object
    @settings(max_examples=20, deadline=None, suppress_health_check=QUIET)
    @given(spec=specs(), data=st.data())
    def agrees(spec, data) -> None:
        module, gm, x = build(spec)
        params = data.draw(split_params(gm), label="params")
        params["keep_original_order"] = keep_original_order

        parts, summary = _apply(impl, gm, module, params)
        _, upstream_summary = _apply(UPSTREAM, gm, module, params)

        if parts is None:
            assert isinstance(upstream_summary, Exception), f"{impl.name} raised {summary!r}, upstream did not"
            assert type(summary) is type(upstream_summary)
            return
        assert not isinstance(upstream_summary, Exception), f"upstream raised {upstream_summary!r}"
        torch.testing.assert_close(parts(x), module(x))
        assert summary == upstream_summary

    agrees()


@pytest.mark.parametrize("kind", ["monotone", "cyclic"])
def test_only_maps_going_back_can_cycle(impl: Implementation, kind: str) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=QUIET)
    @given(spec=specs(), data=st.data())
    def splits(spec, data) -> None:
        module, gm, x = build(spec)
        assignment = data.draw(partition_maps(gm, kind=kind), label="partition")
        try:
            parts = impl.split_module.split_module(gm, module, lambda n: assignment.get(n.name, 0))
        except RuntimeError as exc:
            # a monotone map follows the data flow, so its partitions never wait on each other
            assert kind == "cyclic" and "cycle" in str(exc)
            return
        torch.testing.assert_close(parts(x), module(x))

    splits()
