"""Plant a bug in a copy of a reference transform and check that a campaign on random
modules finds it, names it, and shrinks the case that shows it to a handful of ops."""

from __future__ import annotations

from pathlib import Path

import pytest
from _mutants import MUTANTS, Mutant, mutated_source

from conform import campaign, plugins
from generators import spec as spec_mod


def _results(report: Path) -> list[dict]:
    from conform.store import Store

    with Store.open(report, create=False) as store:
        return [o.to_json() for o in store.outcomes()]


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_campaign_finds_and_shrinks_a_planted_bug(mutant: Mutant, tmp_path: Path) -> None:
    # the plugin plants the mutant in the campaign's worker processes only
    config = campaign.CampaignConfig(
        transforms=(mutant.transform,), sources=("random",), devices=("cpu",), budget_s=120.0,
        max_cases=80, seed=1, workers=1, report_dir=str(tmp_path), plugins=(mutant.plugin,), database=None,
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
def test_planted_row_shrinks_on_random_modules(tmp_path: Path) -> None:
    plugins.load(["conform.selfcheck"])
    config = campaign.CampaignConfig(
        transforms=("planted_add_becomes_sub",), sources=("random",), devices=("cpu",), budget_s=120.0,
        max_cases=30, seed=2, workers=1, report_dir=str(tmp_path), plugins=("conform.selfcheck",), database=None,
        source_options={"random": {"include": ("add", "mul", "relu", "linear"), "max_nodes": 16}},
    )
    summary = campaign.run(config)
    assert summary["new_divergences"] > 0
    shrunk = [o for o in _results(tmp_path) if o["notes"].get("shrunk_from")]
    assert shrunk and all(spec_mod.op_count(o["spec"]) <= 3 for o in shrunk), [o["spec"] for o in shrunk]


def test_mutation_sites_exist() -> None:
    for mutant in MUTANTS:
        mutated_source(mutant)
