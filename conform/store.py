"""The record store: one SQLite file per report directory, ``<report>/conform.sqlite``.

Layout::

    meta          schema_version
    runs          one row per campaign (or pytest session, or import): wall-clock start and
                  end, the run's metadata as JSON (seed, budget, workers, transforms, sources,
                  environment, shard), interrupted flag, status
    cases         one row per case (key = Case.key): source, spec (JSON, deflated with a
                  preset dictionary of the spec format's common text, see ``pack_spec``),
                  seed, device
    outcomes      one row per outcome key, unique across the store: the run that first saw
                  it, its case, the structured fields (verdict, stage, symptom, exception,
                  the exception's own message (error), side, place, node, known entry,
                  origin, params), ``t`` (seconds since its run
                  started) and its duration; message, diffs, notes and the repro path only
                  where an outcome has them (a pass is a compact row)
    sightings     an outcome a later run saw again (the key is stored once; the sighting
                  keeps that run's view complete)
    known_status  per run and known-divergence entry: how often it was seen, whether its
                  witness is stale and why

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
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from conform import repro
from conform.case import Case
from conform.errors import UsageError
from conform.outcome import Mismatch, Outcome, Stage, Symptom, Verdict, stable_key

FILENAME = "conform.sqlite"
SCHEMA_VERSION = 3
REPRO = "repro"
# repro scripts written per origin: a new divergence's first few examples, a known one's first
REPROS_PER_ORIGIN = {Verdict.FAIL: 5, Verdict.KNOWN: 2}
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
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

# schema_version -> the function that brings a store of that version to the next one. A
# version with no entry here (older) or above SCHEMA_VERSION (newer) is refused by name.
def _add_side_and_error(db: sqlite3.Connection) -> None:
    """Version 2 to 3: outcomes gain the structured ``error`` and ``side`` columns. An older
    outcome has neither (its message holds the engine's prose only), so both stay NULL."""
    have = {row[1] for row in db.execute("PRAGMA table_info(outcomes)")}
    for column in ("error", "side"):
        if column not in have:
            db.execute(f"ALTER TABLE outcomes ADD COLUMN {column} TEXT")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _add_side_and_error}

_OUTCOME_COLUMNS = ("key", "run_id", "case_key", "transform", "device", "verdict", "stage", "symptom",
                    "exception", "error", "side", "place", "node", "known_id", "origin", "params", "t", "duration",
                    "message", "diffs", "notes", "repro")
_SELECT = ("SELECT o.key, o.transform, o.device, o.verdict, o.stage, o.symptom, o.exception, o.error, "
           "o.side, o.place, "
           "o.node, o.known_id, o.params, o.duration, o.message, o.diffs, o.notes, o.repro, o.t, "
           "c.source, c.case_id, c.spec, c.seed FROM outcomes o JOIN cases c ON c.key = o.case_key")


# The spec column holds ``_PACKED`` followed by the spec's JSON, raw-deflated with this preset
# dictionary: text that most specs share (field names, the commonest ops, dtypes), so a
# 2.5 KB spec takes about 360 bytes. The dictionary is part of the stored format: never edit
# it; a different one needs another marker byte beside ``_PACKED``.
_PACKED = b"\x01"
_SPEC_DICTIONARY = (
    '{"attrs":{"dim":1,"keepdim":false,"style":1,"scalar":-1.0,"scale":0.5,"rank":2,"index":0,"k":1,'
    '"bias":true,"pad":1,"stride":1,"shift":1,"nd":2,"groups":1,"start":0,"cin":3,"cout":4,"n":2,'
    '"new":false,"attr":"p0"},"dtype":"float16","dtype":"bfloat16","dtype":"int64","dtype":"bool"'
    '{"dtype":"float32","format":"fx-conform.random/1","inputs":[{"dtype":"float32","name":"x1",'
    '"shape":[1,6,6,3]},{"dtype":"float64","name":"x2","shape":[5,1,5,4]}],"nodes":['
    + "".join(f'{{"attrs":{{"style":0}},"dtype":"float32","id":"v{i + 3}","in":["v{i + 2}"],"op":"{op}",'
              f'"shape":[{i % 5 + 1},{i % 4 + 2}]}},'
              for i, op in enumerate(
                  "relu param tanh softplus hardswish elu sigmoid mish leaky_relu silu selu relu6 gelu "
                  "logsigmoid hardtanh abs exp softsign add cos sqrt log atan typed_getitem erf reciprocal "
                  "rsqrt neg mul sin getitem matmul clamp floor sub inplace lt maximum dropout div sign "
                  "remainder linear masked_fill block pow minimum lerp le ge square eq assert atan2 cat gt "
                  "unsqueeze grad_region cast norm conv batch_norm embedding".split()))
    + '],"outputs":{"tuple":["v3","v6"]},"signature":{"default":null,"flag":null,"varkw":false},'
      '"stochastic":false,"training":true}'
).encode()


def pack_spec(spec: Any) -> bytes:
    """A case spec as the store keeps it: its canonical JSON, deflated (see ``_SPEC_DICTIONARY``)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=_SPEC_DICTIONARY)
    return _PACKED + deflate.compress(_dumps(spec).encode()) + deflate.flush()


def unpack_spec(value: bytes | str) -> Any:
    """The spec ``pack_spec`` packed; a store of schema version 1 kept plain JSON text."""
    if isinstance(value, str):
        return json.loads(value)
    if value[:1] != _PACKED:
        raise UsageError(f"a case spec in the record store has format marker {value[:1]!r}; this fx-conform "
                         f"reads {_PACKED!r} (a newer fx-conform may have written it)")
    inflate = zlib.decompressobj(-15, zdict=_SPEC_DICTIONARY)
    return json.loads(inflate.decompress(value[1:]) + inflate.flush())


def _pack_version_1_specs(db: sqlite3.Connection) -> None:
    """Version 1 kept specs as JSON text; version 2 packs them and indexes outcomes by origin."""
    db.execute("CREATE INDEX IF NOT EXISTS outcomes_origin ON outcomes(origin)")
    rows = db.execute("SELECT key, spec FROM cases WHERE typeof(spec) = 'text'").fetchall()
    db.executemany("UPDATE cases SET spec = ? WHERE key = ?", [(pack_spec(json.loads(s)), k) for k, s in rows])


MIGRATIONS[1] = _pack_version_1_specs


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


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
            _prepare_schema(db, path)
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
            SELECT s.run_id, count(*), sum(s.first), count(DISTINCT o.case_key),
                   sum(o.verdict = 'fail'), sum(o.verdict = 'known'), sum(o.verdict = 'pass'),
                   sum(o.verdict = 'skip'), sum(coalesce(o.symptom = 'timeout', 0)),
                   sum(coalesce(o.symptom = 'crash', 0))
            FROM seen s JOIN outcomes o ON o.id = s.outcome GROUP BY s.run_id"""
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
        return self._db.execute("SELECT 1 FROM outcomes WHERE key = ?", (key,)).fetchone() is not None

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
        with self._write() as db:
            for outcome in outcomes:
                row = db.execute("SELECT id, run_id FROM outcomes WHERE key = ?", (outcome.key,)).fetchone()
                if row is not None:
                    if row[1] != run_id:
                        db.execute("INSERT OR IGNORE INTO sightings (run_id, outcome, t) VALUES (?, ?, ?)",
                                   (run_id, row[0], t))
                    continue
                if case is not None and outcome.is_divergence and outcome.repro is None and (
                        outcome.notes.get("shrunk_from") or self._repros_of(outcome) < REPROS_PER_ORIGIN[
                            outcome.verdict]):
                    self._write_repro(outcome, case)
                case_row = _case_row(outcome, case)
                db.execute("INSERT OR IGNORE INTO cases (key, source, case_id, spec, seed, device) "
                           "VALUES (?, ?, ?, ?, ?, ?)", case_row)
                db.execute(f"INSERT INTO outcomes ({', '.join(_OUTCOME_COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(_OUTCOME_COLUMNS))})",
                           _outcome_row(run_id, case_row[0], outcome, t))
                new.append(outcome)
        return new

    def _repros_of(self, outcome: Outcome) -> int:
        return int(self._db.execute("SELECT count(*) FROM outcomes WHERE origin = ? AND repro IS NOT NULL",
                                    (outcome.origin,)).fetchone()[0])

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
            rows = self._db.execute(f"{_SELECT} ORDER BY o.id").fetchall()
        else:
            rows = self._db.execute(f"{_SELECT} WHERE o.run_id = ? ORDER BY o.id", (run_id,)).fetchall()
            rows += self._db.execute(
                f"{_SELECT} JOIN sightings s ON s.outcome = o.id WHERE s.run_id = ? ORDER BY s.rowid",
                (run_id,)).fetchall()
        return [_outcome(row) for row in rows]

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
                db.execute("INSERT OR IGNORE INTO cases SELECT * FROM src.cases")
                columns = ", ".join(_OUTCOME_COLUMNS)
                selected = ", ".join("m.new" if c == "run_id" else f"so.{c}" for c in _OUTCOME_COLUMNS)
                db.execute(f"INSERT OR IGNORE INTO outcomes ({columns}) SELECT {selected} "
                           "FROM src.outcomes so JOIN temp.runmap m ON m.old = so.run_id ORDER BY so.id")
                # an outcome another run recorded first: the merged run still saw it
                db.execute("INSERT OR IGNORE INTO sightings (run_id, outcome, t) SELECT m.new, d.id, so.t "
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


def _prepare_schema(db: sqlite3.Connection, path: Path) -> None:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "meta" not in tables:
        raise UsageError(f"{path} is an SQLite database but not an fx-conform record store (it has no meta table)")
    if not tables:
        # IF NOT EXISTS and the guarded insert let two processes create the same store at once
        schema = _SCHEMA.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ").replace(
            "CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ")
        db.executescript(f"BEGIN IMMEDIATE;\n{schema}\nINSERT INTO meta (schema_version) SELECT {SCHEMA_VERSION} "
                         "WHERE NOT EXISTS (SELECT 1 FROM meta);\nCOMMIT;")
    row = db.execute("SELECT schema_version FROM meta").fetchone()
    if row is None:
        raise UsageError(f"{path} has no schema version; expected a row in its meta table (supported: {SCHEMA_VERSION})")
    version = row[0]
    if not isinstance(version, int):
        raise UsageError(f"{path} has schema version {version!r}; expected an integer (supported: {SCHEMA_VERSION})")
    while version < SCHEMA_VERSION and version in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated while this one waited for the lock
            version = db.execute("SELECT schema_version FROM meta").fetchone()[0]
            if version < SCHEMA_VERSION and version in MIGRATIONS:
                MIGRATIONS[version](db)
                version += 1
                db.execute("UPDATE meta SET schema_version = ?", (version,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    if version != SCHEMA_VERSION:
        newer = "a newer fx-conform wrote it" if version > SCHEMA_VERSION else "no migration from it exists"
        raise UsageError(f"{path} has record-store schema version {version}; this fx-conform supports "
                         f"version {SCHEMA_VERSION} ({newer})")


def _case_row(outcome: Outcome, case: Case | None) -> tuple[Any, ...]:
    if case is not None:
        return (case.key, case.source, outcome.case_id, pack_spec(case.spec), case.seed, case.device)
    return (stable_key(outcome.source, outcome.spec, outcome.seed), outcome.source, outcome.case_id,
            pack_spec(outcome.spec), outcome.seed, "cpu")


def _outcome_row(run_id: int, case_key: str, o: Outcome, t: float) -> tuple[Any, ...]:
    quiet = o.verdict is Verdict.PASS
    # the time an outcome arrived has its own column
    notes = {k: v for k, v in o.notes.items() if k != "t"} if "t" in o.notes else o.notes
    if quiet and "seconds" in notes:
        # a pass keeps what the drivers noted (oracle records) but not the per-side timings
        notes = {k: v for k, v in notes.items() if k != "seconds"}
    return (o.key, run_id, case_key, o.transform, o.device, o.verdict.value,
            o.stage.value if o.stage else None, o.symptom.value if o.symptom else None,
            o.exception, o.error, o.side, o.place, o.node, o.known_id, o.origin, _dumps(o.params) if o.params else None,
            round(t, 3), round(o.duration_s, 4),
            o.message or None,
            _dumps([d.to_json() for d in o.diffs]) if o.diffs else None,
            _dumps(notes) if notes else None,
            o.repro)


def _outcome(row: Sequence[Any]) -> Outcome:
    (key, transform, device, verdict, stage, symptom, exception, error, side, place, node, known_id, params, duration,
     message, diffs, notes, repro_path, t, source, case_id, spec, seed) = row
    notes = json.loads(notes) if notes else {}
    if t is not None:
        notes["t"] = t
    return Outcome(
        key=key, case_id=case_id, source=source, transform=transform, device=device,
        verdict=Verdict(verdict), stage=Stage(stage) if stage else None, symptom=Symptom(symptom) if symptom else None,
        message=message or "", exception=exception, error=error, side=side, place=place, node=node,
        diffs=[Mismatch.from_json(d) for d in json.loads(diffs)] if diffs else [],
        known_id=known_id, spec=unpack_spec(spec), params=json.loads(params) if params else {},
        seed=seed, repro=repro_path, duration_s=duration or 0.0, notes=notes,
    )
