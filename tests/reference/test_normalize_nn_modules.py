"""The nn-module sweep: every entry of PyTorch's nn-module test lists (``module_tests`` and
``get_new_module_tests()``), called as a leaf module and normalized with ``normalize_module``
and NormalizeArgs on both implementations.

The ``pr`` profile (the default) runs every 4th entry; ``--conform-profile nightly`` runs all.
Entries whose module is not a ``torch.nn`` class (common_nn wraps functionals in a
``FunctionalModule``) check that the call is left as it is; the functionals themselves are
covered by the OpInfo sweep.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from normalize_sweeps import (
    build_module_test,
    check_module,
    check_module_left_alone,
    is_standard_module,
    module_tests_by_name,
    sample_profile,
)

from conform.implementations import Implementation


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "module_test" in metafunc.fixturenames:
        profile = metafunc.config.getoption("conform_profile", default="pr") or "pr"
        metafunc.parametrize("module_test", sample_profile(list(module_tests_by_name()), profile, stride=4))


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_module_call_normalizes(impl: Implementation, module_test: str) -> None:
    params = module_tests_by_name()[module_test]
    mod, _ = build_module_test(params)
    if is_standard_module(mod):
        check_module(impl, params)
    else:
        check_module_left_alone(impl, params)


def test_every_entry_is_named_once() -> None:
    from torch.testing._internal.common_nn import get_new_module_tests, module_tests

    assert len(module_tests_by_name()) == len(module_tests) + len(get_new_module_tests())
