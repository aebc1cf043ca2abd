"""Plant a bug in a copy of a reference transform and check that a campaign on random
modules finds it, names it, and shrinks the case that shows it to a handful of ops."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest

import conform.registry as registry
from conform import campaign
from conform.selfcheck import PLANTED
from generators import spec as spec_mod

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # reference basename
    old: str
    new: str
    transform: str
    include: tuple[str, ...]  # random-source op kinds the campaign draws from
    symptom: str


MUTANTS = [
    Mutant("sub-becomes-add", "normalize", '("sub", "sub")', '("sub", "add")', "normalize_operators",
           ("sub",), "eager-mismatch"),
    Mutant("stride-reversed", "shape_prop", "stride=() if sparse else t.stride(),",
           "stride=() if sparse else tuple(reversed(t.stride())),", "shape_prop",
           ("relu", "add", "permute"), "impl-divergence"),
]


def _plant(mutant: Mutant, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "reference" / f"{mutant.module}.py"
    source = path.read_text()
    assert source.count(mutant.old) == 1, f"the mutation site of {mutant.name} is gone from {path.name}"
    name = f"reference.{mutant.module}"
    planted = types.ModuleType(name)
    planted.__file__ = str(path)
    monkeypatch.setitem(sys.modules, name, planted)
    exec(compile(source.replace(mutant.old, mutant.new), str(path), "exec"), planted.__dict__)


def _results(report: Path) -> list[dict]:
    from conform.store import Store

    with Store.open(report, create=False) as store:
        return [o.to_json() for o in store.outcomes()]


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_campaign_finds_and_shrinks_a_planted_bug(mutant: Mutant, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    _plant(mutant, monkeypatch)
    config = campaign.CampaignConfig(
        transforms=(mutant.transform,), sources=("random",), devices=("cpu",), budget_s=120.0,
        max_cases=80, seed=1, workers=1, report_dir=str(tmp_path),
        source_options={"random": {"include": mutant.include, "max_nodes": 8}},
    )
    summary = campaign.run(config)
    found = [d for d in summary["divergences"] if d["symptom"] == mutant.symptom and d["known_id"] is None]
    assert found, f"the planted {mutant.name} went unnoticed: {summary['counts']}"
    shrunk = [o for o in _results(tmp_path) if o["notes"].get("shrunk_from") and o["symptom"] == mutant.symptom]
    assert shrunk, "the first divergence is shrunk"
    assert spec_mod.op_count(shrunk[0]["spec"]) <= 3, shrunk[0]["spec"]
    assert (tmp_path / shrunk[0]["repro"]).exists()


@pytest.mark.slow
def test_planted_row_shrinks_on_random_modules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "TRANSFORMS", (*registry.TRANSFORMS, PLANTED["planted_add_becomes_sub"]))
    config = campaign.CampaignConfig(
        transforms=("planted_add_becomes_sub",), sources=("random",), devices=("cpu",), budget_s=120.0,
        max_cases=30, seed=2, workers=1, report_dir=str(tmp_path),
        source_options={"random": {"include": ("add", "mul", "relu", "linear"), "max_nodes": 16}},
    )
    summary = campaign.run(config)
    assert summary["new_divergences"] > 0
    shrunk = [o for o in _results(tmp_path) if o["notes"].get("shrunk_from")]
    assert shrunk and all(spec_mod.op_count(o["spec"]) <= 3 for o in shrunk), [o["spec"] for o in shrunk]


def test_mutation_sites_exist() -> None:
    for mutant in MUTANTS:
        source = (ROOT / "reference" / f"{mutant.module}.py").read_text()
        assert source.count(mutant.old) == 1, mutant.name
