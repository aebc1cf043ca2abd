"""The record store: one SQLite file per report directory, ``<report>/conform.sqlite``.

The layout (schema version 4: runs, cases with their packed specs, kinds, outcomes with
their packed details, sightings, known status) is described in :mod:`conform.store_format`.

The file runs in WAL mode, so several processes may write it at once; each write is one
short ``BEGIN IMMEDIATE`` transaction, so an interrupted campaign loses at most the outcomes
of the case it was checking.

Example::

    >>> store = Store.open("reports")
    >>> run = store.begin_run({"seed": 0})
    >>> new = store.record(run, outcomes, case)
    >>> store.end_run(run, {"duration_s": 12.5}, known_status={})
    >>> store.outcomes(run)
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conform import repro
from conform.case import Case
from conform.errors import UsageError
from conform.outcome import Outcome, Verdict, stable_key
from conform.store_format import (
    KIND_FIELDS,
    MIGRATIONS,
    OUTCOME_COLUMNS,
    SCHEMA_VERSION,
    SELECT,
    case_row,
    key_value,
    kind_id,
    kind_of,
    outcome_from_row,
    outcome_values,
    pack_spec,
    prepare_schema,
    unpack_spec,
)
from conform.store_format import dumps as _dumps

__all__ = ["FILENAME", "MIGRATIONS", "REPRO", "SCHEMA_VERSION", "Store", "pack_spec", "path_of", "unpack_spec"]

FILENAME = "conform.sqlite"
REPRO = "repro"
# repro scripts written per origin: a new divergence's first few examples, a known one's first
REPROS_PER_ORIGIN = {Verdict.FAIL: 5, Verdict.KNOWN: 1}
_SQLITE_HEADER = b"SQLite format 3\x00"

def path_of(report_dir: Path | str) -> Path:
    """Where the store of ``report_dir`` lives."""
    return Path(report_dir) / FILENAME


class Store:
    """A report directory's record store. Open it with :meth:`Store.open`."""

    def __init__(self, report_dir: Path, connection: sqlite3.Connection) -> None:
        self.report_dir = report_dir
        self.path = path_of(report_dir)
        self._db = connection
        self._started: dict[int, float] = {}
        self._kinds: dict[str, int] = {}

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, report_dir: Path | str, *, create: bool = True) -> Store:
        """Open (or, with ``create``, create) the store of ``report_dir``.

        Raises:
            UsageError: the file is not an fx-conform store, has a schema version this
                version cannot read, or cannot be created or opened; or (without
                ``create``) there is no store.
        """
        report_dir = Path(report_dir)
        path = path_of(report_dir)
        if not path.exists() and not create:
            raise UsageError(f"no record store at {path} (run `conform run --report {report_dir}` first)")
        if path.exists():
            _check_header(path)
        else:
            try:
                report_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create report directory {report_dir}: {exc.strerror or exc}") from None
        try:
            db = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise UsageError(f"cannot open record store {path}: {exc}") from None
        try:
            db.execute("PRAGMA busy_timeout = 60000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            prepare_schema(db, path)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise UsageError(f"{path} is not a readable fx-conform record store ({exc})") from None
        except UsageError:
            db.close()
            raise
        return cls(report_dir, db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- runs ---------------------------------------------------------------------------

    def begin_run(self, meta: dict[str, Any]) -> int:
        """Start a run; returns its id (increasing within a store)."""
        started = time.time()
        with self._write() as db:
            cursor = db.execute("INSERT INTO runs (uid, started, meta) VALUES (?, ?, ?)",
                                (uuid.uuid4().hex, started, _dumps(meta)))
        run_id = int(cursor.lastrowid or 0)
        self._started[run_id] = started
        return run_id

    def end_run(self, run_id: int, meta: dict[str, Any], known_status: dict[str, dict[str, Any]]) -> None:
        """Close a run: merge ``meta`` into its metadata, store the known-divergence status
        (``{entry id: {"seen": n, "stale": bool | None, "stale_reason": str}}``)."""
        with self._write() as db:
            row = db.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UsageError(f"no run {run_id} in {self.path}")
            merged = {**json.loads(row[0]), **meta}
            interrupted = bool(merged.get("interrupted"))
            db.execute("UPDATE runs SET finished = ?, meta = ?, interrupted = ?, status = ? WHERE id = ?",
                       (time.time(), _dumps(merged), int(interrupted),
                        "interrupted" if interrupted else "finished", run_id))
            db.executemany(
                "INSERT OR REPLACE INTO known_status (run_id, entry_id, seen, stale, stale_reason) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, entry_id, int(status.get("seen", 0)),
                  None if status.get("stale") is None else int(bool(status["stale"])), status.get("stale_reason"))
                 for entry_id, status in known_status.items()])

    def latest_run(self) -> int | None:
        row = self._db.execute("SELECT max(id) FROM runs").fetchone()
        return None if row[0] is None else int(row[0])

    def run(self, run_id: int) -> dict[str, Any]:
        """One run's row: ``id``, ``started``, ``finished``, ``status``, ``interrupted``, ``meta``."""
        row = self._db.execute("SELECT id, started, finished, status, interrupted, meta FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run_id} in {self.path}", choices=[str(r["id"]) for r in self.runs()])
        return {"id": row[0], "started": row[1], "finished": row[2], "status": row[3],
                "interrupted": bool(row[4]), "meta": json.loads(row[5])}

    def known_status(self, run_id: int) -> dict[str, dict[str, Any]]:
        """The known-divergence status :meth:`end_run` stored for ``run_id``."""
        rows = self._db.execute("SELECT entry_id, seen, stale, stale_reason FROM known_status WHERE run_id = ?",
                                (run_id,))
        return {entry: {"seen": seen, "stale": None if stale is None else bool(stale),
                        **({"stale_reason": reason} if reason is not None else {})}
                for entry, seen, stale, reason in rows}

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, with its metadata and what it saw: ``counts`` of
        ``new`` (new divergences), ``known``, ``pass``, ``skip``, ``timeout``, ``crash``,
        ``outcomes``, ``cases`` (distinct) and ``first_seen`` (outcomes no earlier run had)."""
        counts: dict[int, dict[str, int]] = {}
        query = """
            WITH seen(run_id, outcome, first) AS (
                SELECT run_id, id, 1 FROM outcomes
                UNION ALL SELECT run_id, outcome, 0 FROM sightings)
            SELECT s.run_id, count(*), sum(s.first), count(DISTINCT o.case_row),
                   sum(k.verdict = 'fail'), sum(k.verdict = 'known'), sum(k.verdict = 'pass'),
                   sum(k.verdict = 'skip'), sum(coalesce(k.symptom = 'timeout', 0)),
                   sum(coalesce(k.symptom = 'crash', 0))
            FROM seen s JOIN outcomes o ON o.id = s.outcome JOIN kinds k ON k.id = o.kind GROUP BY s.run_id"""
        for run_id, total, first, cases, new, known, passed, skip, timeout, crash in self._db.execute(query):
            counts[run_id] = {"outcomes": total, "first_seen": first, "cases": cases, "new": new, "known": known,
                              "pass": passed, "skip": skip, "timeout": timeout, "crash": crash}
        empty = dict.fromkeys(("outcomes", "first_seen", "cases", "new", "known", "pass", "skip", "timeout",
                               "crash"), 0)
        rows = self._db.execute("SELECT id, uid, started, finished, status, interrupted, meta FROM runs ORDER BY id")
        return [{"id": rid, "uid": uid, "started": started, "finished": finished, "status": status,
                 "interrupted": bool(interrupted), "meta": json.loads(meta), "counts": counts.get(rid, dict(empty))}
                for rid, uid, started, finished, status, interrupted, meta in rows]

    # ---- outcomes -----------------------------------------------------------------------

    def has_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM outcomes WHERE key = ?", (key_value(key),)).fetchone() is not None

    def record(self, run_id: int, outcomes: list[Outcome], case: Case | None, *,
               t: float | None = None) -> list[Outcome]:
        """Record ``outcomes`` of ``case`` (``None``: take the case from the outcomes) in run
        ``run_id``; returns those whose key the store did not have yet.

        A new divergence gets ``repro/<key>.py`` (when ``case`` is given and the outcome has
        no repro yet) and ``outcome.repro`` set to its path relative to the report
        directory, while its origin has fewer than ``REPROS_PER_ORIGIN`` of them (a shrunk
        example always gets one): the thousandth sighting of one bug adds a row, not a
        script. ``conform replay KEY --repro FILE`` writes the script of any other. An outcome whose key is already stored is not stored again; the run
        notes that it saw it. ``t`` defaults to the seconds since the run began.
        """
        if t is None:
            t = time.time() - self._run_started(run_id)
        new: list[Outcome] = []
        case_key = case.key if case is not None else None
        with self._write() as db:
            for outcome in outcomes:
                row = db.execute("SELECT id, run_id FROM outcomes WHERE key = ?", (key_value(outcome.key),)).fetchone()
                if row is not None:
                    if row[1] != run_id:
                        db.execute("INSERT OR IGNORE INTO sightings (run_id, outcome, t) VALUES (?, ?, ?)",
                                   (run_id, row[0], t))
                    continue
                if case is not None and outcome.is_divergence and outcome.repro is None and (
                        outcome.notes.get("shrunk_from") or self._repros_of(outcome) < REPROS_PER_ORIGIN[
                            outcome.verdict]):
                    self._write_repro(outcome, case)
                fields = _case_fields(outcome, case, case_key)
                found = db.execute("SELECT id FROM cases WHERE key = ?", (key_value(fields[0]),)).fetchone()
                # the spec is packed only for a case the store does not hold yet
                case_id = found[0] if found is not None else db.execute(
                    "INSERT INTO cases (key, source, case_id, spec, seed, device) VALUES (?, ?, ?, ?, ?, ?)",
                    case_row(*fields)).lastrowid
                db.execute(f"INSERT INTO outcomes ({', '.join(OUTCOME_COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(OUTCOME_COLUMNS))})",
                           (key_value(outcome.key), run_id, case_id, kind_id(db, kind_of(outcome), self._kinds),
                            *outcome_values(outcome, t)))
                new.append(outcome)
        return new

    def _repros_of(self, outcome: Outcome) -> int:
        return int(self._db.execute("SELECT count(*) FROM outcomes o JOIN kinds k ON k.id = o.kind "
                                    "WHERE k.origin = ? AND o.repro IS NOT NULL", (outcome.origin,)).fetchone()[0])

    def _write_repro(self, outcome: Outcome, case: Case) -> None:
        try:
            path = repro.write(outcome, case, self.report_dir / REPRO)
            outcome.repro = str(path.relative_to(self.report_dir))
        except Exception as exc:  # a case whose source cannot be written still counts
            outcome.notes["repro_error"] = f"{type(exc).__name__}: {exc}"

    def _run_started(self, run_id: int) -> float:
        if run_id not in self._started:
            row = self._db.execute("SELECT started FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UsageError(f"no run {run_id} in {self.path}")
            self._started[run_id] = float(row[0])
        return self._started[run_id]

    def outcomes(self, run_id: int | None = None) -> list[Outcome]:
        """Outcomes of one run (those it recorded first, then those it saw again), or every
        outcome in the store when ``run_id`` is None; spec and seed come from ``cases``."""
        if run_id is None:
            rows = self._db.execute(f"{SELECT} ORDER BY o.id").fetchall()
        else:
            rows = self._db.execute(f"{SELECT} WHERE o.run_id = ? ORDER BY o.id", (run_id,)).fetchall()
            rows += self._db.execute(
                f"{SELECT} JOIN sightings s ON s.outcome = o.id WHERE s.run_id = ? ORDER BY s.rowid",
                (run_id,)).fetchall()
        return [outcome_from_row(row) for row in rows]

    def count(self) -> int:
        """How many distinct outcome keys the store holds."""
        return int(self._db.execute("SELECT count(*) FROM outcomes").fetchone()[0])

    # ---- merging ------------------------------------------------------------------------

    def merge(self, other: Path | str) -> list[int]:
        """Add the runs, cases, outcomes and known status of the store in report directory
        ``other``; returns this store's ids of its runs. Idempotent: a run is identified by
        its uid, an outcome by its key, so merging the same store twice adds nothing."""
        source = Store.open(other, create=False)
        source_path = source.path
        source.close()
        self._db.execute("ATTACH DATABASE ? AS src", (str(source_path),))
        try:
            with self._write() as db:
                db.execute("CREATE TEMP TABLE IF NOT EXISTS runmap (old INTEGER PRIMARY KEY, new INTEGER)")
                db.execute("DELETE FROM temp.runmap")
                for old, uid, started, finished, meta, interrupted, status in db.execute(
                        "SELECT id, uid, started, finished, meta, interrupted, status FROM src.runs ORDER BY id"
                ).fetchall():
                    mine = db.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()
                    if mine is None:
                        mine = (db.execute("INSERT INTO runs (uid, started, finished, meta, interrupted, status) "
                                           "VALUES (?, ?, ?, ?, ?, ?)",
                                           (uid, started, finished, meta, interrupted, status)).lastrowid,)
                    db.execute("INSERT INTO temp.runmap VALUES (?, ?)", (old, mine[0]))
                db.execute("INSERT OR IGNORE INTO cases (key, source, case_id, spec, seed, device) "
                           "SELECT key, source, case_id, spec, seed, device FROM src.cases ORDER BY id")
                kind_columns = "sig, " + ", ".join(KIND_FIELDS)
                db.execute(f"INSERT OR IGNORE INTO kinds ({kind_columns}) SELECT {kind_columns} FROM src.kinds "
                           "ORDER BY id")
                columns = ", ".join(OUTCOME_COLUMNS)
                selected = ", ".join({"run_id": "m.new", "kind": "k.id", "case_row": "c.id"}.get(c, f"so.{c}")
                                     for c in OUTCOME_COLUMNS)
                db.execute(f"INSERT OR IGNORE INTO outcomes ({columns}) SELECT {selected} "
                           "FROM src.outcomes so JOIN temp.runmap m ON m.old = so.run_id "
                           "JOIN src.kinds sk ON sk.id = so.kind JOIN kinds k ON k.sig = sk.sig "
                           "JOIN src.cases sc ON sc.id = so.case_row JOIN cases c ON c.key = sc.key ORDER BY so.id")
                # an outcome another run recorded first: the merged run still saw it
                db.execute("INSERT OR IGNORE INTO sightings (run_id, outcome, t) SELECT m.new, d.id, so.t_ms / 1000.0 "
                           "FROM src.outcomes so JOIN temp.runmap m ON m.old = so.run_id "
                           "JOIN outcomes d ON d.key = so.key WHERE d.run_id != m.new")
                db.execute("INSERT OR IGNORE INTO sightings (run_id, outcome, t) SELECT m.new, d.id, s.t "
                           "FROM src.sightings s JOIN temp.runmap m ON m.old = s.run_id "
                           "JOIN src.outcomes so ON so.id = s.outcome JOIN outcomes d ON d.key = so.key "
                           "WHERE d.run_id != m.new")
                db.execute("INSERT OR IGNORE INTO known_status SELECT m.new, k.entry_id, k.seen, k.stale, "
                           "k.stale_reason FROM src.known_status k JOIN temp.runmap m ON m.old = k.run_id")
                mapped = [int(new) for (new,) in db.execute("SELECT new FROM temp.runmap ORDER BY old")]
        finally:
            self._db.execute("DETACH DATABASE src")
        return mapped


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise UsageError(f"cannot read record store {path}: {exc.strerror or exc}") from None
    if head and head != _SQLITE_HEADER:
        raise UsageError(f"{path} is not an fx-conform record store (not an SQLite database); "
                         "move it away or pick another --report directory")


def _case_fields(outcome: Outcome, case: Case | None, case_key: str | None) -> tuple[Any, ...]:
    """``(key, source, case id, spec, seed, device)`` of an outcome's case (``case_key`` is
    ``case.key``, computed once per record)."""
    if case is not None:
        return (case_key, case.source, outcome.case_id, case.spec, case.seed, case.device)
    return (stable_key(outcome.source, outcome.spec, outcome.seed), outcome.source, outcome.case_id,
            outcome.spec, outcome.seed, "cpu")
