"""The record store through the command line: export, import, merge, shards, the report
directory's safety rules and JUnit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conform import junit, record
from conform import store as store_mod
from conform.cli import main
from conform.outcome import Outcome, Stage, Symptom, Verdict
from conform.shards import Shard
from conform.store import FILENAME, Store

RUN = ["run", "--source", "samples", "--transform", "shape_prop", "--device", "cpu"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tmp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = tmp_path_factory.mktemp("report")
    assert main([*RUN, "--max-cases", "4", "--report", str(report)]) == 0
    return report


@pytest.fixture(scope="module")
def exported(recorded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "out.jsonl"
    assert main(["export", "--jsonl", str(path), "--report", str(recorded)]) == 0
    return path


def test_export_writes_every_field(recorded: Path, exported: Path) -> None:
    lines = exported.read_text().splitlines()
    stored = Store.open(recorded).outcomes()
    assert len(lines) == len(stored) == 4
    for line, outcome in zip(lines, stored, strict=True):
        data = json.loads(line)
        assert data["key"] == outcome.key and data["spec"] == outcome.spec and data["seed"] == outcome.seed
        assert data["origin"] == outcome.origin and data["verdict"] == "pass"
    assert not _tmp_leftovers(exported.parent)


def test_export_of_one_run_and_of_an_unknown_run(recorded: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "export", "--jsonl", str(tmp_path / "one.jsonl"), "--report", str(recorded),
                        "--run", "1")
    assert code == 0 and "4 outcomes" in out
    code, _, err = _run(capsys, "export", "--jsonl", str(tmp_path / "x.jsonl"), "--report", str(recorded),
                        "--run", "9")
    assert code == 2 and "no run 9" in err and not (tmp_path / "x.jsonl").exists()
    code, _, err = _run(capsys, "export", "--jsonl", str(tmp_path / "missing" / "x.jsonl"), "--report", str(recorded))
    assert code == 2 and "missing" in err
    assert not _tmp_leftovers(tmp_path) and not _tmp_leftovers(recorded)


def test_import_adds_and_never_removes(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "imported"
    code, out, _ = _run(capsys, "report", "--from", str(exported), "--report", str(target))
    assert code == 0 and "4 outcomes new" in out and "4 cases" in out
    assert Store.open(target).count() == 4
    # a second file with one outcome the store has and one it has not: the store only grows
    first, *_ = exported.read_text().splitlines()
    extra = json.loads(first)
    extra["key"] = "f" * 16
    (tmp_path / "more.jsonl").write_text(first + "\n" + json.dumps(extra) + "\n")
    code, out, _ = _run(capsys, "report", "--from", str(tmp_path / "more.jsonl"), "--report", str(target))
    assert code == 0 and "1 outcomes new" in out
    assert Store.open(target).count() == 5
    code, out, _ = _run(capsys, "report", "--from", str(exported), "--report", str(target))
    assert code == 0 and "0 outcomes new" in out and Store.open(target).count() == 5
    # reporting again renders from the store and changes none of it
    code, out, _ = _run(capsys, "report", "--report", str(target))
    assert code == 0 and Store.open(target).count() == 5


def test_a_results_file_from_an_older_version_is_imported_and_kept(exported: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.jsonl").write_bytes(exported.read_bytes())
    (old / "summary.json").write_text(json.dumps({"seed": 5, "known": {}}))
    key = json.loads(exported.read_text().splitlines()[0])["key"]
    code, out, _ = _run(capsys, "replay", key[:12], "--report", str(old))
    assert code == 0 and "recorded: pass" in out
    assert not (old / FILENAME).exists()  # replay reads, never writes
    code, out, err = _run(capsys, "report", "--report", str(old))
    assert code == 0 and "4 cases" in out
    assert "is empty; importing" in err and "results.jsonl" in err
    assert (old / "results.jsonl").read_bytes() == exported.read_bytes()
    (run,) = Store.open(old).runs()
    assert run["meta"]["seed"] == 5 and run["counts"]["outcomes"] == 4


def test_a_summary_that_is_not_an_object_is_a_usage_error(exported: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.jsonl").write_bytes(exported.read_bytes())
    (old / "summary.json").write_text("[]")
    before = _files(old)
    code, _, err = _run(capsys, "report", "--report", str(old))
    assert code == 2 and f"{old / 'summary.json'} holds list, expected the summary object" in err
    assert _files(old) == before


def _record(exported: Path) -> dict:
    return json.loads(exported.read_text().splitlines()[0])


BAD_RECORDS = [
    ("42", "the record is int, not an outcome object"),
    ("null", "the record is null, not an outcome object"),
    ("[]", "the record is list, not an outcome object"),
    ('"text"', "the record is str, not an outcome object"),
    ({"key": 7}, "field 'key' is int, expected a string"),
    ({"verdict": "maybe"}, "field 'verdict' is 'maybe', expected one of pass, skip, known, fail"),
    ({"stage": "cook"}, "field 'stage' is 'cook', expected one of generate"),
    ({"params": []}, "field 'params' is list, expected an object"),
    ({"seed": "1"}, "field 'seed' is str, expected an integer"),
    ({"seed": True}, "field 'seed' is bool, expected an integer"),
    ({"diffs": [{"left": "a", "right": "b", "what": "outputs", "detail": 3}]},
     "diffs[0].detail is int, expected a string"),
    ({"diffs": ["x"]}, "diffs[0] is str, expected an object"),
    ({"side": "left"}, "field 'side' is 'left', expected null or one of reference, upstream, both, user"),
    ({"error": 3}, "field 'error' is int, expected a string or null"),
    ({"diffs": [{"left": "a", "right": "b", "what": "outputs", "detail": "d", "entries": [{"left": "1"}]}]},
     "diffs[0].entries[0] has no field 'path'"),
    ({"diffs": [{"left": "a", "right": "b", "what": "outputs", "detail": "d",
                 "entries": [{"path": "output", "right": 2}]}]},
     "diffs[0].entries[0].right is int, expected a string or null"),
    ({"notes": None}, "field 'notes' is null, expected an object"),
    ({"duration_s": "fast"}, "field 'duration_s' is str, expected an integer or a number"),
    ({"key": None}, "field 'key' is null, expected a string"),
    ("drop:case_id", "field 'case_id' is missing"),
    ("drop:spec", "field 'spec' is missing"),
]


@pytest.mark.parametrize(("bad", "needle"), BAD_RECORDS, ids=[str(i) for i in range(len(BAD_RECORDS))])
def test_malformed_records_are_usage_errors_naming_file_and_line(exported: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 bad: object, needle: str) -> None:
    good = _record(exported)
    if isinstance(bad, dict):
        line = json.dumps({**good, **bad})
    elif bad.startswith("drop:"):
        line = json.dumps({k: v for k, v in good.items() if k != bad[5:]})
    else:
        line = bad
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n" + json.dumps(good) + "\n")
    target = tmp_path / "target"
    code, _, err = _run(capsys, "report", "--from", str(path), "--report", str(target))
    assert code == 2, err
    assert f"{path}:2" in err and needle in err
    assert len(err.strip().splitlines()) == 1
    assert not target.exists()  # refused before anything is written
    # the same file left in a report directory by an older version: replay refuses it too
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.jsonl").write_text(path.read_text())
    code, _, err = _run(capsys, "replay", good["key"], "--report", str(tmp_path / "old"))
    assert code == 2 and f"{tmp_path / 'old' / 'results.jsonl'}:2" in err


def test_structured_fields_survive_export_and_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conform.outcome import DiffEntry, Mismatch

    base = dict(case_id="c", source="samples", transform="split_module", device="cpu", verdict=Verdict.FAIL,
                spec={"sample": "two_adds"}, seed=0)
    made = [
        Outcome(key="crash", stage=Stage.TRANSFORM_UPSTREAM, symptom=Symptom.CRASH, exception="KeyError",
                error="'getitem_1'", side="upstream", message="upstream raises KeyError: 'getitem_1'", **base),
        Outcome(key="fp", stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, place="fingerprint",
                diffs=[Mismatch("upstream", "reference", "fingerprint", "fingerprint.a: 1 vs 2",
                                entries=[DiffEntry("fingerprint.a", "1", "2"), DiffEntry("fingerprint.b", None, "3")])],
                **base),
    ]
    old = dict(made[0].to_json())
    for name in ("error", "side"):
        del old[name]  # a file an older version wrote
    old["key"] = "old"
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(o.to_json() if isinstance(o, Outcome) else o) + "\n" for o in [*made, old]))
    code, _, err = _run(capsys, "report", "--from", str(path), "--report", str(tmp_path / "r"))
    assert code == 1 and not err  # imported; the run holds new divergences
    back = tmp_path / "back.jsonl"
    assert _run(capsys, "export", "--jsonl", str(back), "--report", str(tmp_path / "r"))[0] == 0
    again = {o["key"]: o for o in map(json.loads, back.read_text().splitlines())}
    assert (again["crash"]["side"], again["crash"]["error"]) == ("upstream", "'getitem_1'")
    assert (again["old"]["side"], again["old"]["error"]) == (None, None)
    assert again["fp"]["diffs"][0]["entries"] == [{"path": "fingerprint.a", "left": "1", "right": "2"},
                                                  {"path": "fingerprint.b", "left": None, "right": "3"}]


def test_a_truncated_last_line_is_skipped_with_a_warning(exported: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    text = exported.read_text()
    path = tmp_path / "cut.jsonl"
    path.write_text(text + text.splitlines()[0][:57])  # the writer died mid-line
    code, out, err = _run(capsys, "report", "--from", str(path), "--report", str(tmp_path / "r"))
    assert code == 0 and "4 outcomes new" in out
    assert f"warning: {path}:5: skipped a truncated last record" in err
    # a cut line that is not the last one is corruption, not truncation
    lines = text.splitlines()
    path.write_text(lines[0][:57] + "\n" + "\n".join(lines[1:]) + "\n")
    code, _, err = _run(capsys, "report", "--from", str(path), "--report", str(tmp_path / "r"))
    assert code == 2 and f"{path}:1 is not a valid outcome record" in err


def test_a_directory_holding_only_a_placeholder_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a fresh clone's reports/ holds only .gitkeep: the README's campaign command writes there
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / ".gitkeep").write_text("")
    code, _, err = _run(capsys, *RUN, "--max-cases", "1", "--report", str(reports))
    assert code == 0, err
    assert (reports / "index.html").exists() and (reports / ".gitkeep").exists()


def test_a_foreign_directory_is_refused_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    (foreign / "index.html").write_text("my own page")
    before = _files(foreign)
    code, _, err = _run(capsys, *RUN, "--max-cases", "1", "--report", str(foreign))
    assert code == 2 and f"report directory {foreign} is not empty and was not written by fx-conform" in err
    assert "--force" in err and _files(foreign) == before
    code, _, _ = _run(capsys, *RUN, "--max-cases", "1", "--report", str(foreign), "--force")
    assert code == 0
    assert (foreign / "holiday.jpg").read_bytes() == before[foreign / "holiday.jpg"]
    # a second run into the same directory appends to the store and keeps the foreign file
    code, _, _ = _run(capsys, *RUN, "--max-cases", "2", "--report", str(foreign))
    assert code == 0 and len(Store.open(foreign).runs()) == 2
    assert (foreign / "holiday.jpg").exists()
    assert not _tmp_leftovers(foreign)


def test_a_run_deletes_only_what_it_wrote(recorded: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r"
    assert _run(capsys, *RUN, "--max-cases", "2", "--report", str(report))[0] == 0
    (report / "mine.txt").write_text("notes")
    (report / "repro").mkdir(exist_ok=True)
    (report / "repro" / "hand_written.py").write_text("print(1)")
    manifest = json.loads((report / record.MANIFEST).read_text())
    assert {"index.html", "summary.json"} <= set(manifest["generated"])
    code, _, _ = _run(capsys, *RUN, "--max-cases", "3", "--seed", "1", "--report", str(report))
    assert code == 0
    assert (report / "mine.txt").read_text() == "notes"
    assert (report / "repro" / "hand_written.py").read_text() == "print(1)"
    runs = Store.open(report).runs()
    assert [r["counts"]["cases"] for r in runs] == [2, 3]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["cases"] == 3 and [h["id"] for h in summary["history"]] == [r["id"] for r in runs]


@pytest.mark.parametrize("where", ["proc", "under-a-file", "read-only"])
def test_unwritable_report_paths_exit_2_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        where: str) -> None:
    if where == "proc":
        path = Path("/proc/x")
    elif where == "under-a-file":
        (tmp_path / "file").write_text("keep")
        path = tmp_path / "file" / "report"
    else:
        if os.geteuid() == 0:
            pytest.skip("permission bits do not stop root")
        path = tmp_path / "ro"
        path.mkdir()
        path.chmod(0o555)
    code, _, err = _run(capsys, *RUN, "--max-cases", "1", "--report", str(path))
    assert code == 2 and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_shards_split_the_cases_and_merge_idempotently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["run", "--source", "random", "--transform", "shape_prop", "--device", "cpu", "--seed", "4",
              "--max-cases", "5", "--no-shrink"]
    for i in (1, 2):
        code, _, err = _run(capsys, *common, "--shard", f"{i}/2", "--report", str(tmp_path / f"s{i}"))
        assert code == 0, err
    stores = [Store.open(tmp_path / f"s{i}") for i in (1, 2)]
    cases = [{o.source + json.dumps(o.spec, sort_keys=True) + str(o.seed) for o in s.outcomes()} for s in stores]
    keys = [{o.key for o in s.outcomes()} for s in stores]
    assert all(len(c) == 5 for c in cases) and not cases[0] & cases[1]
    for i, s in enumerate(stores, 1):
        assert all(Shard(i, 2).owns(o.seed) for o in s.outcomes())
        assert s.runs()[0]["meta"]["shard"] == f"{i}/2"
    merged = tmp_path / "merged"
    merge = ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--into", str(merged)]
    code, out, _ = _run(capsys, *merge)
    assert code == 0 and "10 cases" in out
    assert Store.open(merged).count() == len(keys[0]) + len(keys[1])
    first = (Store.open(merged).count(), Store.open(merged).runs(), json.loads((merged / "summary.json").read_text()))
    code, out, _ = _run(capsys, *merge)
    again = (Store.open(merged).count(), Store.open(merged).runs(), json.loads((merged / "summary.json").read_text()))
    assert code == 0
    assert again[0] == first[0] and again[1] == first[1]
    assert (again[2]["counts"], again[2]["cases"]) == (first[2]["counts"], first[2]["cases"]) == ({"pass": 10}, 10)
    assert first[2]["shards"] == ["1/2", "2/2"]
    # one shard merged a third time: still each key once
    assert _run(capsys, "merge", str(tmp_path / "s2"), "--into", str(merged))[0] == 0
    assert (Store.open(merged).count(), Store.open(merged).runs()) == first[:2]


def test_merge_refuses_what_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "merge", str(tmp_path / "empty"), "--into", str(tmp_path / "m"))
    assert code == 2 and f"no record store at {tmp_path / 'empty' / FILENAME}" in err
    assert not (tmp_path / "m").exists()


def test_bad_shard_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--shard", "3/2"])
    assert info.value.code == 2 and "shard 3/2 is out of range" in capsys.readouterr().err


def test_junit_from_a_run_with_new_divergences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, xml = tmp_path / "r", tmp_path / "junit.xml"
    code, out, _ = _run(capsys, "run", "--source", "samples", "--transform", "planted_upstream_crash",
                        "--plugin", "conform.selfcheck", "--quiet",
                        "--max-cases", "2", "--report", str(report), "--device", "cpu", "--no-shrink",
                        "--junit", str(xml))
    assert code == 1 and f"junit: {xml}" in out
    root = ET.parse(xml).getroot()
    assert root.tag == "testsuites" and int(root.get("failures", "0")) >= 1
    failures = [case for case in root.iter("testcase") if case.find("failure") is not None]
    assert failures and all(case.get("classname") == "planted_upstream_crash" for case in failures)
    message = failures[0].find("failure").get("message")
    key = message.split("conform replay ")[1].split()[0]
    assert f"conform replay {key} --report {report}" in message
    assert Store.open(report).has_key(key)


def test_junit_marks_known_and_passing_origins() -> None:
    def outcome(key: str, verdict: Verdict, **kw: object) -> Outcome:
        return Outcome(key=key, case_id="samples:x#1", source="samples", transform="split_module", device="cpu",
                       verdict=verdict, **kw)

    outcomes = [
        outcome("a", Verdict.PASS), outcome("b", Verdict.PASS),
        outcome("c", Verdict.KNOWN, stage=Stage.COMPARE, symptom=Symptom.IMPL_DIVERGENCE, known_id="k-1"),
        outcome("d", Verdict.FAIL, stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="KeyError",
                message="bad \x00 byte <tag> & more"),
    ]
    root = junit.build(outcomes, {"duration_s": 2.0}, report_dir="out")
    text = ET.tostring(root, encoding="unicode")
    cases = {c.get("name"): c for c in ET.fromstring(text).iter("testcase")}
    assert len(cases) == 3 and root.get("tests") == "3"
    passed = cases["split_module|-|-|-|-"]
    assert passed.find("failure") is None and passed.find("skipped") is None
    known = cases["split_module|compare|impl-divergence|-|-"].find("skipped")
    assert "known divergence k-1" in known.get("message") and "conform replay c --report out" in known.get("message")
    failure = cases["split_module|execute|crash|KeyError|-"].find("failure")
    assert "conform replay d --report out" in failure.get("message") and "<tag> & more" in failure.text


def test_a_run_that_never_closed_is_reported_as_interrupted(exported: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from conform import jsonl

    report = tmp_path / "r"
    record.prepare_report_dir(report, force=False)
    outcomes = jsonl.read_jsonl(exported)
    with Store.open(report) as store:  # a campaign killed after recording two outcomes
        run = store.begin_run({"seed": 3, "workers": 1})
        store.record(run, outcomes[:2], None)
    code, out, _ = _run(capsys, "report", "--report", str(report))
    summary = json.loads((report / "summary.json").read_text())
    assert code == 0 and summary["outcomes"] == 2 and summary["interrupted"] is True and summary["seed"] == 3
    (row,) = Store.open(report).runs()
    assert row["status"] == "interrupted" and row["counts"]["outcomes"] == 2


def test_a_store_from_a_newer_version_stops_the_run_and_keeps_the_report(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    report = tmp_path / "r"
    assert _run(capsys, *RUN, "--max-cases", "1", "--report", str(report))[0] == 0
    db = sqlite3.connect(report / FILENAME)
    db.execute("UPDATE meta SET schema_version = 7")
    db.commit()
    db.close()
    before = _files(report)
    code, _, err = _run(capsys, *RUN, "--max-cases", "1", "--report", str(report))
    assert code == 2 and f"{report / FILENAME} has record-store schema version 7" in err
    assert _files(report) == before


def test_repro_scripts_are_capped_per_origin_and_replay_writes_any_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r"
    code, _, _ = _run(capsys, "run", "--source", "samples", "--transform", "planted_upstream_crash",
                      "--plugin", "conform.selfcheck", "--quiet", "--max-cases", "12", "--report", str(report),
                      "--device", "cpu", "--no-shrink")
    assert code == 1
    divergent = [o for o in Store.open(report).outcomes() if o.is_divergence]
    by_origin: dict[str, list] = {}
    for o in divergent:
        by_origin.setdefault(o.origin, []).append(o)
    assert any(len(group) > store_mod.REPROS_PER_ORIGIN[Verdict.FAIL] for group in by_origin.values())
    for group in by_origin.values():
        written = [o for o in group if o.repro]
        assert len(written) == min(len(group), store_mod.REPROS_PER_ORIGIN[Verdict.FAIL])
        assert all((report / o.repro).is_file() for o in written)
    assert len(list((report / "repro").glob("*.py"))) == sum(1 for o in divergent if o.repro)
    other = next(o for o in divergent if not o.repro)
    script = tmp_path / "other.py"
    code, out, _ = _run(capsys, "replay", other.key, "--report", str(report), "--plugin", "conform.selfcheck",
                        "--repro", str(script))
    assert code == 1 and f"repro: {script}" in out
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert ran.returncode == 1, ran.stderr[-2000:]
    assert "planted_upstream_crash" in ran.stdout
    code, _, err = _run(capsys, "replay", other.key, "--report", str(report), "--plugin", "conform.selfcheck",
                        "--repro", str(tmp_path / "missing" / "dir" / "x.py"))
    assert code == 2 and "cannot write the repro script" in err
