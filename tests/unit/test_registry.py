"""Every registry row resolves on both implementations, and every reference module has a row."""

from __future__ import annotations

from pathlib import Path

import pytest

from conform.adapters import CONVENTIONS
from conform.errors import UsageError
from conform.implementations import UPSTREAM_MODULES, Implementation
from conform.registry import TRANSFORMS, get, select

ROOT = Path(__file__).resolve().parents[2]
ROWS = {row.name: row for row in TRANSFORMS}


def test_names_are_unique() -> None:
    assert len(ROWS) == len(TRANSFORMS)


@pytest.mark.parametrize("name", sorted(ROWS))
@pytest.mark.parametrize("impl_name", ["upstream", "reference"])
def test_row_target_resolves(name: str, impl_name: str) -> None:
    row = ROWS[name]
    assert callable(Implementation(impl_name).resolve(row.target))
    assert callable(row.load(impl_name))


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_loaders_resolve(name: str) -> None:
    row = ROWS[name]
    assert row.convention == "custom" or row.convention in CONVENTIONS
    assert callable(row.load_driver())
    if row.params:
        assert callable(row.load_params())
    if row.fingerprint:
        assert callable(row.load_fingerprint())
    assert row.description
    for basename in row.modules:
        assert basename in UPSTREAM_MODULES, f"{name} covers unknown module {basename}"


def _reference_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "reference").glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("basename", _reference_modules())
def test_every_reference_module_has_a_row(basename: str) -> None:
    covered = {m for row in TRANSFORMS for m in row.modules}
    assert basename in covered, f"reference/{basename}.py is exercised by no registry row"


@pytest.mark.parametrize("basename", _reference_modules())
def test_every_reference_module_mirrors_an_upstream_module(basename: str) -> None:
    assert basename in UPSTREAM_MODULES


def test_unknown_transform_lists_valid_names() -> None:
    with pytest.raises(UsageError) as info:
        get("no_such_transform")
    message = str(info.value)
    assert "no_such_transform" in message
    assert all(name in message for name in ROWS)


def test_select_all_and_dedup() -> None:
    assert select([]) == list(TRANSFORMS)
    first = TRANSFORMS[0].name
    assert select([first, first]) == [TRANSFORMS[0]]
