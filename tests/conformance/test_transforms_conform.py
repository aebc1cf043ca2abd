"""Every registered transform conforms on random modules: reference and upstream agree and
the transformed module computes what the eager module computes, or the difference is a
registered known divergence.

Runs through the plugin (``conform`` and ``conform_transform`` fixtures), so
``--conform-report DIR`` collects these outcomes into a report and ``--conform-profile
nightly`` draws many more modules.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.engine import Prepared, prepare
from conform.registry import get
from generators.sources import get_source


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_modules_conform(conform, conform_transform: str, conform_seed: int, data: st.DataObject) -> None:
    spec = data.draw(get_source("random").specs(), label="spec")
    seed = data.draw(st.integers(0, 2**16), label="seed") + conform_seed
    case = Case("random", spec, seed=seed)
    prepared = prepare(case)
    assume(isinstance(prepared, Prepared))  # cases that cannot be traced are the generators' tests' concern
    factory = get(conform_transform).load_params()
    params = data.draw(factory(prepared.graph_module), label="params") if factory else {}
    conform.assert_conforms(case, conform_transform, params, prepared=prepared)
