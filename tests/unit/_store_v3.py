"""Stores as schema version 3 wrote them (the layout before kinds and packed details), for
the migration tests: a frozen copy of that layout and of how it wrote an outcome row."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

from conform.case import Case
from conform.outcome import Outcome, Verdict
from conform.store_format import _SPEC_DICTIONARY_1

SCHEMA_3 = """
CREATE TABLE meta (schema_version INTEGER NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    started REAL NOT NULL,
    finished REAL,
    meta TEXT NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE cases (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    case_id TEXT NOT NULL,
    spec BLOB NOT NULL,
    seed INTEGER NOT NULL,
    device TEXT NOT NULL DEFAULT 'cpu'
);
CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    case_key TEXT NOT NULL REFERENCES cases(key),
    transform TEXT NOT NULL,
    device TEXT NOT NULL,
    verdict TEXT NOT NULL,
    stage TEXT,
    symptom TEXT,
    exception TEXT,
    error TEXT,
    side TEXT,
    place TEXT,
    node TEXT,
    known_id TEXT,
    origin TEXT NOT NULL,
    params TEXT,
    t REAL,
    duration REAL,
    message TEXT,
    diffs TEXT,
    notes TEXT,
    repro TEXT
);
CREATE INDEX outcomes_run ON outcomes(run_id);
CREATE INDEX outcomes_origin ON outcomes(origin);
CREATE TABLE sightings (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    outcome INTEGER NOT NULL REFERENCES outcomes(id),
    t REAL,
    PRIMARY KEY (run_id, outcome)
);
CREATE TABLE known_status (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    entry_id TEXT NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0,
    stale INTEGER,
    stale_reason TEXT,
    PRIMARY KEY (run_id, entry_id)
);
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def _pack_spec_1(spec: Any) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=_SPEC_DICTIONARY_1)
    return b"\x01" + deflate.compress(_dumps(spec).encode()) + deflate.flush()


def write_version_3(report_dir: Path, runs: list[list[tuple[list[Outcome], Case]]], *, t: float = 1.5) -> None:
    """A version 3 store in ``report_dir`` holding ``runs``: per run, (outcomes, case) pairs.
    An outcome a later run records again becomes a sighting, as version 3 did."""
    report_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(report_dir / "conform.sqlite")
    db.executescript(SCHEMA_3)
    db.execute("INSERT INTO meta VALUES (3)")
    for number, recorded in enumerate(runs, 1):
        run_id = db.execute("INSERT INTO runs (uid, started, meta) VALUES (?, ?, ?)",
                            (f"run-{number}", 1000.0 + number, _dumps({"seed": number}))).lastrowid
        for outcomes, case in recorded:
            db.execute("INSERT OR IGNORE INTO cases VALUES (?, ?, ?, ?, ?, ?)",
                       (case.key, case.source, case.id, _pack_spec_1(case.spec), case.seed, case.device))
            for o in outcomes:
                row = db.execute("SELECT id, run_id FROM outcomes WHERE key = ?", (o.key,)).fetchone()
                if row is not None:
                    if row[1] != run_id:
                        db.execute("INSERT OR IGNORE INTO sightings VALUES (?, ?, ?)", (run_id, row[0], t))
                    continue
                notes = {k: v for k, v in o.notes.items() if k != "t"}
                if o.verdict is Verdict.PASS:
                    notes.pop("seconds", None)
                db.execute(
                    "INSERT INTO outcomes (key, run_id, case_key, transform, device, verdict, stage, symptom, "
                    "exception, error, side, place, node, known_id, origin, params, t, duration, message, diffs, "
                    "notes, repro) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (o.key, run_id, case.key, o.transform, o.device, o.verdict.value,
                     o.stage.value if o.stage else None, o.symptom.value if o.symptom else None, o.exception,
                     o.error, o.side, o.place, o.node, o.known_id, o.origin, _dumps(o.params) if o.params else None,
                     round(t, 3), round(o.duration_s, 4), o.message or None,
                     _dumps([d.to_json() for d in o.diffs]) if o.diffs else None, _dumps(notes) if notes else None,
                     o.repro))
    db.commit()
    db.close()
