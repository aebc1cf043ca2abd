"""The layering rules of ARCHITECTURE.md, enforced on the source trees."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN_IN_REFERENCE = (
    "torch.fx.experimental",
    "torch.fx.passes",
    "torch.fx.operator_schemas",
    "conform",
    "generators",
)
FORBIDDEN_IN_GENERATORS = ("conform", "reference")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from torch.fx import passes` reaches a forbidden module too
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("reference"), ids=lambda p: p.name)
def test_reference_never_imports_what_it_reimplements(path: Path) -> None:
    bad = [f"line {n}: {name}" for n, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_REFERENCE)]
    assert not bad, f"{path.name} imports forbidden modules: {bad}"


@pytest.mark.parametrize("path", _files("generators"), ids=lambda p: str(p.relative_to(ROOT / "generators")))
def test_generators_import_only_torch_and_hypothesis_side(path: Path) -> None:
    bad = [f"line {n}: {name}" for n, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_GENERATORS)]
    assert not bad, f"{path.name} imports forbidden modules: {bad}"


def test_the_checker_sees_a_planted_violation(tmp_path: Path) -> None:
    planted = tmp_path / "bad.py"
    planted.write_text("from torch.fx import passes\nimport torch.fx.experimental.optimization as o\n")
    names = [name for _, name in _imports(planted)]
    assert "torch.fx.passes" in names
    assert "torch.fx.experimental.optimization" in names
