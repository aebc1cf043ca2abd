from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from _store_v3 import write_version_3

from conform import store as store_mod
from conform import store_format
from conform.case import Case
from conform.engine import check
from conform.errors import UsageError
from conform.outcome import Mismatch, Outcome, Stage, Symptom, Verdict
from conform.selfcheck import PLANTED
from conform.shards import Shard, parse_shard, seed_share
from conform.store import Store

TWO_ADDS = Case("samples", {"sample": "two_adds"})
LINEAR = Case("samples", {"sample": "linear_relu"})


def _divergence() -> list[Outcome]:
    return check(TWO_ADDS, PLANTED["planted_add_becomes_sub"], params={"partition": {"add_1": 1}})


def _made(case: Case, verdict: Verdict, symptom: Symptom | None, key: str) -> Outcome:
    return Outcome(key=key, case_id=case.id, source=case.source, transform="split_module", device="cpu",
                   verdict=verdict, stage=Stage.TRANSFORM_UPSTREAM if symptom else None, symptom=symptom,
                   exception="KeyError" if symptom else None, known_id="k-1" if verdict is Verdict.KNOWN else None,
                   message="upstream raised" if symptom else "", spec=case.spec, seed=case.seed,
                   diffs=[Mismatch("reference", "upstream", "error", "KeyError vs none")] if symptom else [])


def _rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path / store_mod.FILENAME)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_schema_and_wal(tmp_path: Path) -> None:
    with Store.open(tmp_path):
        pass
    assert _rows(tmp_path, "SELECT schema_version FROM meta") == [(store_mod.SCHEMA_VERSION,)]
    assert _rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in _rows(tmp_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "runs", "cases", "kinds", "outcomes", "sightings", "known_status"} <= tables
    # the view gives SQL users every outcome field by name
    columns = {row[1] for row in _rows(tmp_path, "PRAGMA table_info(outcome_view)")}
    assert {"key", "run_id", "case_key", "transform", "device", "verdict", "stage", "symptom", "exception",
            "side", "known_id", "origin", "t", "duration", "detail", "repro"} <= columns
    assert "spec" not in {row[1] for row in _rows(tmp_path, "PRAGMA table_info(outcomes)")}  # once, in cases


def test_spec_is_stored_once_and_passes_are_compact(tmp_path: Path) -> None:
    passes = check(TWO_ADDS, "shape_prop") + check(TWO_ADDS, "normalize_operators") + check(LINEAR, "shape_prop")
    assert all(o.verdict is Verdict.PASS for o in passes)
    with Store.open(tmp_path) as store:
        run = store.begin_run({"seed": 0})
        assert store.record(run, passes[:2], TWO_ADDS) == passes[:2]
        assert store.record(run, passes[2:], LINEAR) == passes[2:]
    assert _rows(tmp_path, "SELECT count(*) FROM cases") == [(2,)]
    assert (store_mod.pack_spec(TWO_ADDS.spec),) in _rows(tmp_path, "SELECT spec FROM cases")
    with Store.open(tmp_path) as store:
        assert [o.spec for o in store.outcomes()] == [TWO_ADDS.spec, TWO_ADDS.spec, LINEAR.spec]
        assert [o.case_id for o in store.outcomes()] == [TWO_ADDS.id, TWO_ADDS.id, LINEAR.id]
    # a built-in source derives a case's id from its spec: the store keeps none
    assert _rows(tmp_path, "SELECT DISTINCT case_id FROM cases") == [(None,)]
    # the grouping fields are stored once per kind: two transforms, two kinds for three passes
    assert _rows(tmp_path, "SELECT count(*) FROM kinds") == [(2,)]
    for detail, repro in _rows(tmp_path, "SELECT detail, repro FROM outcomes"):
        fields = store_format.unpack_detail(detail)
        assert set(fields) <= {"params", "notes"} and repro is None
        assert "seconds" not in fields.get("notes", {})


def test_packed_details_are_a_fraction_of_their_json() -> None:
    outcomes = _divergence()
    for o in outcomes:
        detail = store_format.detail_of(o)
        packed = store_format.pack_detail(detail)
        assert store_format.unpack_detail(packed) == json.loads(store_format.dumps(detail))
        assert len(packed) * 2 < len(store_format.dumps(detail)), (len(packed), detail)


def test_divergence_row_is_complete_and_round_trips(tmp_path: Path) -> None:
    outcomes = _divergence()
    with Store.open(tmp_path) as store:
        run = store.begin_run({})
        store.record(run, outcomes, TWO_ADDS, t=1.5)
        back = store.outcomes(run)
    assert [o.key for o in back] == [o.key for o in outcomes]
    for original, restored in zip(outcomes, back, strict=True):
        assert restored.repro == f"repro/{original.key}.py" and (tmp_path / restored.repro).exists()
        # the arrival time comes back in the notes, from its own column
        assert restored.notes.pop("t") == 1.5
        assert dataclasses.asdict(restored) == dataclasses.asdict(original)
    assert {t for (t,) in _rows(tmp_path, "SELECT t FROM outcome_view")} == {1.5}


def test_an_outcome_key_is_stored_once(tmp_path: Path) -> None:
    outcomes = _divergence() + check(TWO_ADDS, "shape_prop")
    with Store.open(tmp_path) as store:
        first = store.begin_run({})
        assert len(store.record(first, outcomes, TWO_ADDS)) == len(outcomes)
        assert store.record(first, outcomes, TWO_ADDS) == []
        second = store.begin_run({})
        assert store.record(second, outcomes, TWO_ADDS) == []
        assert store.count() == len(outcomes)
        assert store.has_key(outcomes[0].key) and not store.has_key("0" * 16)
        # the later run still sees what it saw, without a second copy of the outcome
        assert [o.key for o in store.outcomes(second)] == [o.key for o in outcomes]
        assert len(store.outcomes()) == len(outcomes)
        counts = {r["id"]: r["counts"] for r in store.runs()}
    assert counts[first]["first_seen"] == len(outcomes) and counts[second]["first_seen"] == 0
    assert counts[second]["outcomes"] == len(outcomes)
    assert _rows(tmp_path, "SELECT count(*) FROM outcomes") == [(len(outcomes),)]


def test_runs_report_meta_and_counts(tmp_path: Path) -> None:
    made = [_made(TWO_ADDS, Verdict.FAIL, Symptom.CRASH, "a1"), _made(TWO_ADDS, Verdict.KNOWN, Symptom.CRASH, "a2"),
            _made(LINEAR, Verdict.FAIL, Symptom.TIMEOUT, "a3"), _made(LINEAR, Verdict.PASS, None, "a4"),
            _made(LINEAR, Verdict.SKIP, None, "a5")]
    with Store.open(tmp_path) as store:
        run = store.begin_run({"seed": 7, "shard": "1/2"})
        store.record(run, made[:2], TWO_ADDS)
        store.record(run, made[2:], LINEAR)
        store.end_run(run, {"duration_s": 3.0, "interrupted": True},
                      {"k-1": {"seen": 1, "stale": False}, "k-2": {"seen": 0, "stale": True, "stale_reason": "gone"}})
        empty = store.begin_run({"seed": 8})
        runs = store.runs()
        assert store.known_status(run) == {"k-1": {"seen": 1, "stale": False},
                                           "k-2": {"seen": 0, "stale": True, "stale_reason": "gone"}}
    first, second = runs
    assert first["id"] == run and second["id"] == empty
    assert first["meta"] == {"seed": 7, "shard": "1/2", "duration_s": 3.0, "interrupted": True}
    assert first["interrupted"] and first["status"] == "interrupted" and first["finished"] >= first["started"]
    assert first["counts"] == {"outcomes": 5, "first_seen": 5, "cases": 2, "new": 2, "known": 1, "pass": 1,
                               "skip": 1, "timeout": 1, "crash": 2}
    assert second["status"] == "running" and second["counts"]["outcomes"] == 0


@pytest.mark.parametrize("version", [0, store_mod.SCHEMA_VERSION + 1, 99])
def test_other_schema_versions_are_refused_by_name(tmp_path: Path, version: int) -> None:
    Store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / store_mod.FILENAME)
    db.execute("UPDATE meta SET schema_version = ?", (version,))
    db.commit()
    db.close()
    with pytest.raises(UsageError) as info:
        Store.open(tmp_path)
    message = str(info.value)
    assert str(tmp_path / store_mod.FILENAME) in message
    assert f"schema version {version}" in message and f"supports version {store_mod.SCHEMA_VERSION}" in message


def test_an_older_schema_is_migrated_when_a_migration_exists(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path).close()
    previous = store_mod.SCHEMA_VERSION - 1
    db = sqlite3.connect(tmp_path / store_mod.FILENAME)
    db.execute("UPDATE meta SET schema_version = ?", (previous,))
    db.execute("ALTER TABLE runs RENAME COLUMN status TO state")
    db.commit()
    db.close()
    monkeypatch.setitem(store_mod.MIGRATIONS, previous,
                        lambda db: db.execute("ALTER TABLE runs RENAME COLUMN state TO status"))
    with Store.open(tmp_path) as store:
        store.begin_run({})
        assert store.runs()[0]["status"] == "running"
    assert _rows(tmp_path, "SELECT schema_version FROM meta") == [(store_mod.SCHEMA_VERSION,)]


def test_a_version_3_store_is_migrated_with_every_field_and_sighting(tmp_path: Path) -> None:
    divergence, passes = _divergence(), check(LINEAR, "shape_prop") + check(LINEAR, "normalize_operators")
    more = check(TWO_ADDS, "shape_prop")  # a pass of the same kind as the first of ``passes``
    write_version_3(tmp_path, [[(divergence, TWO_ADDS), (passes, LINEAR), (more, TWO_ADDS)],
                               [(divergence[:1], TWO_ADDS)]])
    with Store.open(tmp_path) as store:
        back = store.outcomes()
        runs = store.runs()
        second = store.outcomes(runs[1]["id"])
    assert _rows(tmp_path, "SELECT schema_version FROM meta") == [(store_mod.SCHEMA_VERSION,)]
    assert [o.key for o in back] == [o.key for o in divergence + passes + more]
    for original, restored in zip(divergence + passes + more, back, strict=True):
        assert restored.notes.pop("t") == 1.5
        expected = dataclasses.asdict(original)
        if original.verdict is Verdict.PASS:
            expected["notes"].pop("seconds", None)  # version 3 never kept a pass's timings either
        assert dataclasses.asdict(restored) == expected
    # the second run's sighting still points at its outcome
    assert [o.key for o in second] == [divergence[0].key]
    assert runs[1]["counts"]["outcomes"] == 1 and runs[1]["counts"]["first_seen"] == 0
    assert _rows(tmp_path, "SELECT count(*) FROM kinds") == [(len(divergence + passes),)]


def test_a_version_1_store_is_migrated_and_its_specs_packed(tmp_path: Path) -> None:
    write_version_3(tmp_path, [[(check(TWO_ADDS, "shape_prop"), TWO_ADDS)]])
    db = sqlite3.connect(tmp_path / store_mod.FILENAME)
    db.execute("UPDATE cases SET spec = ?", (json.dumps(TWO_ADDS.spec),))
    db.execute("UPDATE meta SET schema_version = 1")
    db.commit()
    db.close()
    with Store.open(tmp_path) as store:
        assert [o.spec for o in store.outcomes()] == [TWO_ADDS.spec]
    assert _rows(tmp_path, "SELECT schema_version FROM meta") == [(store_mod.SCHEMA_VERSION,)]
    assert _rows(tmp_path, "SELECT typeof(spec) FROM cases") == [("blob",)]


def test_a_random_spec_packs_to_a_fraction_of_its_json() -> None:
    from hypothesis import HealthCheck, given, settings

    from generators.sources import get_source

    specs: list[dict] = []

    @settings(max_examples=40, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(get_source("random").specs())
    def collect(spec: dict) -> None:
        specs.append(spec)

    collect()
    plain = sum(len(json.dumps(s, sort_keys=True, separators=(",", ":"))) for s in specs)
    packed = sum(len(store_mod.pack_spec(s)) for s in specs)
    assert all(store_mod.unpack_spec(store_mod.pack_spec(s)) == s for s in specs)
    assert packed * 4 < plain, (packed, plain)


def _as_version_2(report_dir: Path) -> None:
    """Turn a version 3 store into what version 2 wrote: no error and side columns."""
    db = sqlite3.connect(report_dir / store_mod.FILENAME)
    db.execute("ALTER TABLE outcomes DROP COLUMN error")
    db.execute("ALTER TABLE outcomes DROP COLUMN side")
    db.execute("UPDATE meta SET schema_version = 2")
    db.commit()
    db.close()


def test_a_version_2_store_gains_the_structured_fields(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    outcomes = _divergence()
    write_version_3(old, [[(outcomes, TWO_ADDS)]])
    _as_version_2(old)
    with Store.open(new) as store:
        store.record(store.begin_run({}), [_made(LINEAR, Verdict.FAIL, Symptom.CRASH, "fresh")], LINEAR)
        store.merge(old)  # the older store is migrated as it is opened, then merged
        merged = {o.key: o for o in store.outcomes()}
    assert _rows(old, "SELECT schema_version FROM meta") == [(store_mod.SCHEMA_VERSION,)]
    for o in outcomes:
        back = merged[o.key]
        assert (back.side, back.error) == (None, None)  # version 2 never recorded them
        assert (back.verdict, back.message, back.place) == (o.verdict, o.message, o.place)
        assert [d.detail for d in back.diffs] == [d.detail for d in o.diffs]
    with Store.open(old) as store:
        store.record(store.begin_run({}), outcomes[:1], TWO_ADDS)  # already there: kept as it was
        assert {o.key: o.side for o in store.outcomes()}[outcomes[0].key] is None


def test_side_error_and_diff_entries_survive_the_store(tmp_path: Path) -> None:
    outcomes = _divergence()
    assert {o.side for o in outcomes} == {"reference", None}  # the planted bug is in the reference
    assert any(e.path.startswith("output") for o in outcomes for d in o.diffs for e in d.entries)
    with Store.open(tmp_path) as store:
        store.record(store.begin_run({}), outcomes, TWO_ADDS)
        back = {o.key: o for o in store.outcomes()}
    for o in outcomes:
        assert (back[o.key].side, back[o.key].error) == (o.side, o.error)
        assert back[o.key].diffs == o.diffs


def test_files_that_are_not_stores_are_refused(tmp_path: Path) -> None:
    path = tmp_path / store_mod.FILENAME
    path.write_text("this is not a database")
    with pytest.raises(UsageError, match="not an fx-conform record store"):
        Store.open(tmp_path)
    assert path.read_text() == "this is not a database"
    other = tmp_path / "other"
    other.mkdir()
    db = sqlite3.connect(other / store_mod.FILENAME)
    db.execute("CREATE TABLE things (x)")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="SQLite database but not an fx-conform record store"):
        Store.open(other)
    with pytest.raises(UsageError, match="no record store"):
        Store.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


def test_merge_is_idempotent(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a") as a:
        run = a.begin_run({"shard": "1/2"})
        a.record(run, _divergence(), TWO_ADDS)
    with Store.open(tmp_path / "b") as b:
        run = b.begin_run({"shard": "2/2"})
        b.record(run, check(LINEAR, "shape_prop") + check(TWO_ADDS, "shape_prop"), None)
    with Store.open(tmp_path / "m") as merged:
        ids = merged.merge(tmp_path / "a") + merged.merge(tmp_path / "b")
        snapshot = (merged.count(), merged.runs())
        assert merged.merge(tmp_path / "a") == ids[:1] and merged.merge(tmp_path / "b") == ids[1:]
        assert (merged.count(), merged.runs()) == snapshot
        assert merged.count() == len(_divergence()) + 2
        assert [r["meta"]["shard"] for r in merged.runs()] == ["1/2", "2/2"]


def test_shards_and_workers_split_the_seeds_into_disjoint_classes() -> None:
    seeds = range(5000)
    for n in (1, 2, 3, 7):
        owners = [[s for s in range(1, n + 1) if Shard(s, n).owns(seed)] for seed in seeds]
        assert all(len(o) == 1 for o in owners)
        for workers in (1, 2, 3):
            # every (shard, worker) pair draws its own residue class, all inside its shard
            drawn: dict[int, tuple[int, int]] = {}
            for shard in range(1, n + 1):
                for index in range(workers):
                    stride, offset = seed_share(Shard(shard, n), workers, index)
                    for seed in (offset + stride * k for k in range(200)):
                        assert Shard(shard, n).owns(seed)
                        assert drawn.setdefault(seed, (shard, index)) == (shard, index)
            assert set(range(200 * n * workers)) <= set(drawn)
    assert seed_share(None, 1, 0) == (1, 0)  # one worker, no shard: every seed
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(" 1/1 ").label == "1/1"


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", "1/2/3", ""])
def test_bad_shards_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match=r"1 <= I <= N"):
        parse_shard(text)
