from __future__ import annotations

import json
from pathlib import Path

import pytest

from conform import record, report
from conform.case import Case
from conform.engine import check
from conform.errors import UsageError
from conform.outcome import Mismatch, Outcome, Stage, Symptom, Verdict
from conform.selfcheck import PLANTED
from conform.store import Store

TWO_ADDS = Case("samples", {"sample": "two_adds"})


def _divergence() -> list[Outcome]:
    return check(TWO_ADDS, PLANTED["planted_add_becomes_sub"], params={"partition": {"add_1": 1}})


def test_recorder_appends_and_writes_repro(tmp_path: Path) -> None:
    rec = record.Recorder(tmp_path, "w0")
    outcomes = _divergence()
    rec.record(outcomes, TWO_ADDS)
    rec.record(check(TWO_ADDS, "shape_prop"), TWO_ADDS)
    rec.close()
    back = Store.open(tmp_path).outcomes()
    assert len(back) == len(outcomes) + 1
    assert all(o.repro and (tmp_path / o.repro).exists() for o in back if o.is_divergence)
    assert (back[0].source, back[0].spec, back[0].seed) == (TWO_ADDS.source, TWO_ADDS.spec, TWO_ADDS.seed)


def test_repro_script_reproduces(tmp_path: Path) -> None:
    import subprocess
    import sys

    import conform.registry as registry

    rec = record.Recorder(tmp_path, "w0")
    outcomes = check(TWO_ADDS, "split_module", params={"partition": {"add_1": 1}})
    outcomes[0].verdict = Verdict.FAIL  # force a repro for a real row
    rec.record(outcomes, TWO_ADDS)
    script = tmp_path / outcomes[0].repro
    text = script.read_text()
    assert "def build_case" in text and registry.get("split_module").name in text
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr  # the real row conforms
    assert "split_module" in run.stdout


def test_corrupt_results_line_names_the_line(tmp_path: Path) -> None:
    good = json.dumps(_divergence()[0].to_json())
    (tmp_path / "results.jsonl").write_text(good + "\n{not json\n")
    with pytest.raises(UsageError, match=r"results.jsonl:2 is not a valid outcome record"):
        record.read_results(tmp_path)


def test_missing_results_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no results"):
        record.read_results(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        record.read_results(tmp_path / "nowhere")


def test_summary_counts() -> None:
    outcomes = _divergence() + check(TWO_ADDS, "shape_prop")
    summary = record.summarize(outcomes, meta={"duration_s": 1.0})
    assert summary["cases"] == 1
    assert summary["counts"]["pass"] == 1
    assert summary["new_divergences"] == len(outcomes) - 1
    assert summary["per_transform"]["shape_prop"] == {"pass": 1}
    assert {d["transform"] for d in summary["divergences"]} == {"planted_add_becomes_sub"}
    assert summary["duration_s"] == 1.0


def test_html_escapes_recorded_text() -> None:
    nasty = Outcome(key="k", case_id="<img src=x>", source="samples", transform="t", device="cpu",
                    verdict=Verdict.FAIL, stage=Stage.COMPARE, symptom=Symptom.EAGER_MISMATCH,
                    message="<script>alert(1)</script>",
                    diffs=[Mismatch("a", "b", "outputs", "</pre><b>x</b>")])
    html = report.render([nasty], record.summarize([nasty]))
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img src=x>" not in html and "</pre><b>" not in html
    assert "http://" not in html and "https://" not in html  # no network resources


def test_clear_removes_only_generated_files(tmp_path: Path) -> None:
    record.prepare_report_dir(tmp_path, force=False)
    rec = record.Recorder(tmp_path, "w0")
    rec.record(_divergence(), TWO_ADDS)
    rec.close()
    (tmp_path / "index.html").write_text("old report")
    (tmp_path / "summary.json").write_text("{}")
    record.add_generated(tmp_path, ["index.html", "summary.json", "repro", "../outside.txt"])
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path.parent / "outside.txt").write_text("not ours")
    repros = sorted((tmp_path / "repro").iterdir())
    record.clear(tmp_path)
    assert not (tmp_path / "index.html").exists() and not (tmp_path / "summary.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path.parent / "outside.txt").read_text() == "not ours"
    assert repros and sorted((tmp_path / "repro").iterdir()) == repros
    assert Store.open(tmp_path).count() == len(_divergence())


def test_report_shows_partition_optimality(tmp_path: Path) -> None:
    from conform import campaign

    summary = campaign.run(campaign.CampaignConfig(
        transforms=("partition",), sources=("samples",), devices=("cpu",), budget_s=60.0, max_cases=6,
        report_dir=str(tmp_path), workers=1))
    assert summary["partition_gaps"], "successful partitions of small graphs carry the z3 oracle's gap"
    html = (tmp_path / "index.html").read_text()
    assert "Partition optimality (z3 oracle)" in html
