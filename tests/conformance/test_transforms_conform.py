"""Every registered transform conforms on random modules: reference and upstream agree and
the transformed module computes what the eager module computes, or the difference is a
registered known divergence.

Cases come from :func:`conform.strategies.cases`, directed by each row's focus, the way the
campaign draws them. Runs through the plugin (``conform`` and ``conform_transform``
fixtures), so ``--conform-report DIR`` collects these outcomes into a report and
``--conform-profile nightly`` draws many more modules.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conform.engine import Prepared
from conform.strategies import cases, prepared_for


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_modules_conform(conform, conform_transform: str, conform_seed: int, data: st.DataObject) -> None:
    case, params = data.draw(cases(conform_transform), label="case")
    if conform_seed:
        case = dataclasses.replace(case, seed=(case.seed + conform_seed) % 2**31)
    prepared = prepared_for(case)
    assume(isinstance(prepared, Prepared))  # cases that cannot be traced are the generators' tests' concern
    conform.assert_conforms(case, conform_transform, params, prepared=prepared)
