"""Campaigns that reach the bugs: each plant of ``tests/selfcheck/plants`` breaks one reference
module in a small way, and a short ``conform run`` of the transform that exercises it, with the
plant loaded as a plugin, must report a new divergence that blames the reference. The same
campaign without the plant must report no such divergence, or the finding proves nothing.

Each campaign is bounded by ``--max-cases`` (``plants.MAX_CASES``) under a 60-second budget:
a bounded run draws the same cases every time, and every plant is found in its first few
cases (``bench/planted.py`` prints how soon).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plants  # noqa: E402

CONTROL_MAX_CASES = 15


def test_plants_span_the_reference() -> None:
    """At least 12 plants across at least 10 reference modules, each plant module present and
    each declared module and transform real."""
    from conform import registry
    from conform.implementations import UPSTREAM_MODULES

    assert len(plants.PLANTS) >= 12
    assert len({p.module for p in plants.PLANTS.values()}) >= 10
    rows = registry.transforms()
    for plant in plants.PLANTS.values():
        assert plant.module in UPSTREAM_MODULES, plant
        assert plant.transform in rows, plant
        assert (plants.HERE / f"{plant.name}.py").is_file(), plant


_CHECK_PATCHES = """
import copy, importlib, sys
import plants
changed = []
for plant in plants.PLANTS.values():
    owner = importlib.import_module("reference." + plant.module)
    for part in plant.attr.split("."):
        owner = getattr(owner, part)
    before = copy.copy(owner)
    importlib.import_module(plant.plugin)
    after = importlib.import_module("reference." + plant.module)
    for part in plant.attr.split("."):
        after = getattr(after, part)
    if after is before or (isinstance(before, (dict, tuple)) and after == before):
        changed.append(plant.name)
print(",".join(changed))
"""


def test_each_plant_replaces_what_it_declares() -> None:
    """Loading a plant module changes the reference attribute its catalogue entry names (and
    reading the catalogue changes nothing)."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", _CHECK_PATCHES], cwd=plants.ROOT, env=plants.environment(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", f"plants that leave their attribute as it was: {done.stdout}"


@pytest.mark.slow
@pytest.mark.parametrize("plant", plants.PLANTS.values(), ids=lambda p: p.name)
def test_campaign_finds_the_plant(plant: plants.Plant, tmp_path: Path) -> None:
    code = plants.run(plant, tmp_path)
    found = plants.findings(tmp_path)
    blamed = [o for o in found if plants.blames_reference(o)]
    assert blamed, f"{plant.name} ({plant.description}) went unnoticed: {[o.origin for o in found]}"
    assert code == 1
    assert all(o.transform == plant.transform for o in blamed)


@pytest.mark.slow
@pytest.mark.parametrize("transform", sorted({p.transform for p in plants.PLANTS.values()}))
def test_control_campaign_finds_nothing_new(transform: str, tmp_path: Path) -> None:
    """Without a plant the same campaign finds nothing that blames the reference: what the
    plants' campaigns find comes from the plants. (A new upstream-side divergence is a real
    finding, not the reference's fault; it is shown, and the exit status must say so.)"""
    code = plants.run(None, tmp_path, transform=transform, max_cases=CONTROL_MAX_CASES,
                      options=plants.control_options(transform))
    found = plants.findings(tmp_path)
    blamed = [o for o in found if plants.blames_reference(o)]
    assert not blamed, [o.describe() for o in blamed]
    assert code == (1 if found else 0), [o.describe() for o in found]
