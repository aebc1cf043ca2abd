"""How the record store lays out its data: the schema, the migrations from older versions,
and the packed forms of case specs and outcome details.

Schema version 4::

    meta          schema_version
    runs          one row per campaign (or pytest session, or import): wall-clock start and
                  end, the run's metadata as JSON, interrupted flag, status
    cases         one row per case: its key (Case.key, 8 bytes), source, case id (NULL when
                  a built-in source derives it from the spec), the spec packed
                  (:func:`pack_spec`), seed, device
    kinds         one row per distinct (transform, device, verdict, stage, symptom, exception,
                  side, known entry, origin): the fields an outcome is counted and grouped by,
                  stored once however many outcomes share them
    outcomes      one row per outcome key (8 bytes, see :func:`key_value`), unique across the
                  store: the run that first saw it, its case's row, its kind, ``t_ms`` (milliseconds since its run started), its
                  duration (in units of 100 microseconds), the repro path, and ``detail``:
                  params, the exception's own message (error), place, node, message, diffs
                  and notes, packed (:func:`pack_detail`); a pass has only params and notes
    outcome_view  outcomes joined with their kind and case, keys in hex and ``t`` in
                  seconds: the flat columns to query with SQL
    sightings     an outcome a later run saw again
    known_status  per run and known-divergence entry: how often it was seen, whether its
                  witness is stale and why

Packed values start with a marker byte naming the preset dictionary they were deflated
with (files under ``conform/dictionaries``). A dictionary is part of the stored format: it
is never edited; a better one gets a new marker, and every marker ever written stays
readable.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conform.errors import UsageError
from conform.outcome import Mismatch, Outcome, Stage, Symptom, Verdict, stable_key

SCHEMA_VERSION = 4

_RUNS = """
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
"""
_CASES = """
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    source TEXT NOT NULL,
    case_id TEXT,
    spec BLOB NOT NULL,
    seed INTEGER NOT NULL,
    device TEXT NOT NULL DEFAULT 'cpu'
);
"""
_OUTCOMES = """
CREATE TABLE kinds (
    id INTEGER PRIMARY KEY,
    sig TEXT NOT NULL UNIQUE,
    transform TEXT NOT NULL,
    device TEXT NOT NULL,
    verdict TEXT NOT NULL,
    stage TEXT,
    symptom TEXT,
    exception TEXT,
    side TEXT,
    known_id TEXT,
    origin TEXT NOT NULL
);
CREATE INDEX kinds_origin ON kinds(origin);
CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    case_row INTEGER NOT NULL REFERENCES cases(id),
    kind INTEGER NOT NULL REFERENCES kinds(id),
    t_ms INTEGER,
    duration INTEGER,
    detail BLOB,
    repro TEXT
);
CREATE INDEX outcomes_run ON outcomes(run_id);
CREATE INDEX outcomes_kind ON outcomes(kind);
CREATE VIEW outcome_view AS
    SELECT o.id, CASE typeof(o.key) WHEN 'blob' THEN lower(hex(o.key)) ELSE o.key END AS key, o.run_id,
           lower(hex(c.key)) AS case_key, k.transform, k.device, k.verdict, k.stage, k.symptom,
           k.exception, k.side, k.known_id, k.origin, o.t_ms / 1000.0 AS t, o.duration / 10000.0 AS duration,
           o.detail, o.repro
    FROM outcomes o JOIN kinds k ON k.id = o.kind JOIN cases c ON c.id = o.case_row;
"""
_HISTORY = """
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
SCHEMA = _RUNS + _CASES + _OUTCOMES + _HISTORY

#: the fields of a kind, in column order
KIND_FIELDS = ("transform", "device", "verdict", "stage", "symptom", "exception", "side", "known_id", "origin")
#: outcome columns a store writes (and ``conform merge`` copies), besides the kind
OUTCOME_COLUMNS = ("key", "run_id", "case_row", "kind", "t_ms", "duration", "detail", "repro")
#: what :func:`outcome_from_row` reads, in order
SELECT = ("SELECT o.key, " + ", ".join(f"k.{f}" for f in KIND_FIELDS[:-1]) + ", o.t_ms, o.duration, o.detail, "
          "o.repro, c.source, c.case_id, c.spec, c.seed FROM outcomes o JOIN kinds k ON k.id = o.kind "
          "JOIN cases c ON c.id = o.case_row")
#: durations are stored in these units of a second
DURATION_UNITS = 10_000


def dumps(value: Any) -> str:
    """Canonical compact JSON (sorted keys; what a value cannot say itself is its repr)."""
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def key_value(key: str) -> bytes | str:
    """A key as the store keeps it: the 8 bytes a 16-digit hex key spells, any other key
    (a test's, a plugin's) as its text."""
    if len(key) == 16:
        try:
            return bytes.fromhex(key)
        except ValueError:
            pass
    return key


def key_text(value: bytes | str) -> str:
    """The key :func:`key_value` stored."""
    return value.hex() if isinstance(value, bytes) else value


# ---- packing ----------------------------------------------------------------------------

# Marker 1: raw deflate with a short hand-written dictionary of the spec format's commonest
# text (about 360 bytes for a 2.5 KB spec). Marker 2: a dictionary trained on the specs of
# default campaigns (``scripts/store_dictionaries.py``), about 170 bytes.
_SPEC_1 = b"\x01"
_SPEC_2 = b"\x02"
_SPEC_DICTIONARY_1 = (
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
# Outcome details, marker 1: a dictionary trained on the details of default campaigns.
_DETAIL_1 = b"\x01"
_DICTIONARIES = Path(__file__).parent / "dictionaries"


@functools.cache
def dictionary(name: str) -> bytes:
    """A preset dictionary shipped in ``conform/dictionaries``."""
    return (_DICTIONARIES / name).read_bytes()


def _deflate(data: bytes, zdict: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=zdict)
    return deflate.compress(data) + deflate.flush()


def _inflate(data: bytes, zdict: bytes) -> bytes:
    inflate = zlib.decompressobj(-15, zdict=zdict)
    return inflate.decompress(data) + inflate.flush()


@functools.cache
def _spec_dictionaries() -> dict[bytes, bytes]:
    return {_SPEC_1: _SPEC_DICTIONARY_1, _SPEC_2: dictionary("spec-2.bin")}


def pack_spec(spec: Any) -> bytes:
    """A case spec as the store keeps it: its canonical JSON deflated with the newest spec
    dictionary, behind that dictionary's marker."""
    return _SPEC_2 + _deflate(dumps(spec).encode(), dictionary("spec-2.bin"))


def unpack_spec(value: bytes | str) -> Any:
    """The spec :func:`pack_spec` (of any version) packed; version 1 stores kept plain JSON text."""
    if isinstance(value, str):
        return json.loads(value)
    zdict = _spec_dictionaries().get(bytes(value[:1]))
    if zdict is None:
        raise UsageError(f"a case spec in the record store has format marker {bytes(value[:1])!r}; this "
                         f"fx-conform reads {sorted(_spec_dictionaries())!r} (a newer fx-conform may have written it)")
    return json.loads(_inflate(bytes(value[1:]), zdict))


def pack_detail(detail: dict[str, Any]) -> bytes | None:
    """An outcome's detail fields (only those it has) packed; None when it has none."""
    if not detail:
        return None
    return _DETAIL_1 + _deflate(dumps(detail).encode(), dictionary("detail-1.bin"))


def unpack_detail(value: bytes | None) -> dict[str, Any]:
    if not value:
        return {}
    if bytes(value[:1]) != _DETAIL_1:
        raise UsageError(f"an outcome's detail in the record store has format marker {bytes(value[:1])!r}; this "
                         f"fx-conform reads {_DETAIL_1!r} (a newer fx-conform may have written it)")
    return json.loads(_inflate(bytes(value[1:]), dictionary("detail-1.bin")))


# ---- rows -------------------------------------------------------------------------------

def kind_of(o: Outcome) -> tuple[Any, ...]:
    """The outcome's kind, in :data:`KIND_FIELDS` order."""
    return (o.transform, o.device, o.verdict.value, o.stage.value if o.stage else None,
            o.symptom.value if o.symptom else None, o.exception, o.side, o.known_id, o.origin)


def kind_sig(kind: Sequence[Any]) -> str:
    return dumps(list(kind))


def detail_of(o: Outcome) -> dict[str, Any]:
    """What an outcome row packs: the fields that only some outcomes have. A pass keeps what
    the drivers noted (oracle records) but not its per-side timings; the arrival time has
    its own column."""
    notes = {k: v for k, v in o.notes.items() if k != "t"}
    if o.verdict is Verdict.PASS:
        notes.pop("seconds", None)
    return _present({"params": o.params, "error": o.error, "place": o.place, "node": o.node, "message": o.message,
                     "diffs": [d.to_json() for d in o.diffs], "notes": notes})


def _present(detail: dict[str, Any]) -> dict[str, Any]:
    """The fields that hold something: an empty one is not stored."""
    return {k: v for k, v in detail.items() if v not in (None, "", [], {})}


def outcome_values(o: Outcome, t: float) -> tuple[int, int, bytes | None, str | None]:
    """``(t_ms, duration, detail, repro)`` of an outcome row."""
    return round(t * 1000), round(o.duration_s * DURATION_UNITS), pack_detail(detail_of(o)), o.repro


def derived_case_id(source: str, spec: Any, seed: int) -> str | None:
    """The id a built-in source gives a case (:attr:`conform.case.Case.id`), or None for a
    plugin's source, which a later reader may not have loaded."""
    from conform.case import Case
    from generators.sources import BUILTIN_SOURCES

    if source not in BUILTIN_SOURCES:
        return None
    try:
        return Case(source=source, spec=spec, seed=seed).id
    except Exception:  # a spec its source cannot label keeps its id in full
        return None


def case_row(key: str, source: str, case_id: str, spec: Any, seed: int, device: str) -> tuple[Any, ...]:
    """A ``cases`` row; the id is left out when the source derives the same one."""
    stored = None if case_id == derived_case_id(source, spec, seed) else case_id
    return (key_value(key), source, stored, pack_spec(spec), seed, device)


def outcome_from_row(row: Sequence[Any]) -> Outcome:
    """The outcome a :data:`SELECT` row holds."""
    (key, transform, device, verdict, stage, symptom, exception, side, known_id, t_ms, duration, detail,
     repro_path, source, case_id, spec, seed) = row
    key = key_text(key)
    fields = unpack_detail(detail)
    spec = unpack_spec(spec)
    if case_id is None:
        case_id = derived_case_id(source, spec, seed) or f"{source}:case#{stable_key(source, spec, seed)[:8]}"
    notes = fields.get("notes", {})
    if t_ms is not None:
        notes["t"] = t_ms / 1000
    return Outcome(
        key=key, case_id=case_id, source=source, transform=transform, device=device,
        verdict=Verdict(verdict), stage=Stage(stage) if stage else None, symptom=Symptom(symptom) if symptom else None,
        message=fields.get("message", ""), exception=exception, error=fields.get("error"), side=side,
        place=fields.get("place"), node=fields.get("node"),
        diffs=[Mismatch.from_json(d) for d in fields.get("diffs", ())],
        known_id=known_id, spec=spec, params=fields.get("params", {}),
        seed=seed, repro=repro_path, duration_s=(duration or 0) / DURATION_UNITS, notes=notes,
    )


def kind_id(db: sqlite3.Connection, kind: Sequence[Any], cache: dict[str, int]) -> int:
    """The id of ``kind`` in ``kinds``, added when new (inside the caller's transaction)."""
    sig = kind_sig(kind)
    if sig not in cache:
        row = db.execute("SELECT id FROM kinds WHERE sig = ?", (sig,)).fetchone()
        if row is None:
            row = (db.execute(f"INSERT INTO kinds (sig, {', '.join(KIND_FIELDS)}) "
                              f"VALUES (?, {', '.join('?' * len(KIND_FIELDS))})", (sig, *kind)).lastrowid,)
        cache[sig] = int(row[0])
    return cache[sig]


# ---- migrations -------------------------------------------------------------------------

def _pack_version_1_specs(db: sqlite3.Connection) -> None:
    """Version 1 kept specs as JSON text; version 2 packs them and indexes outcomes by origin."""
    db.execute("CREATE INDEX IF NOT EXISTS outcomes_origin ON outcomes(origin)")
    rows = db.execute("SELECT key, spec FROM cases WHERE typeof(spec) = 'text'").fetchall()
    db.executemany("UPDATE cases SET spec = ? WHERE key = ?", [(pack_spec(json.loads(s)), k) for k, s in rows])


def _add_side_and_error(db: sqlite3.Connection) -> None:
    """Version 2 to 3: outcomes gain the structured ``error`` and ``side`` columns. An older
    outcome has neither (its message holds the engine's prose only), so both stay NULL."""
    have = {row[1] for row in db.execute("PRAGMA table_info(outcomes)")}
    for column in ("error", "side"):
        if column not in have:
            db.execute(f"ALTER TABLE outcomes ADD COLUMN {column} TEXT")


def _kinds_and_packed_details(db: sqlite3.Connection) -> None:
    """Version 3 to 4: keys become 8 bytes and outcomes name their case by row; an outcome's
    grouping fields move to ``kinds`` (stored once per kind), its other fields into the
    packed ``detail``, its times into integers. Outcome ids are kept, so sightings still
    point at their outcomes."""
    cases = db.execute("SELECT key, source, case_id, spec, seed, device FROM cases ORDER BY rowid").fetchall()
    old = "SELECT id, key, run_id, case_key, transform, device, verdict, stage, symptom, exception, side, " \
          "known_id, origin, params, error, place, node, message, diffs, notes, t, duration, repro " \
          "FROM outcomes ORDER BY id"
    rows = db.execute(old).fetchall()
    db.execute("DROP TABLE outcomes")
    db.execute("DROP TABLE cases")
    for statement in (_CASES + _OUTCOMES).split(";"):
        if statement.strip():
            db.execute(statement)
    case_rows = {}
    for key, *rest in cases:
        case_rows[key] = db.execute("INSERT INTO cases (key, source, case_id, spec, seed, device) "
                                    "VALUES (?, ?, ?, ?, ?, ?)", (key_value(key), *rest)).lastrowid
    cache: dict[str, int] = {}
    for (oid, key, run_id, case_key, *kind_and_rest) in rows:
        kind, (params, error, place, node, message, diffs, notes, t, duration, repro_path) = \
            kind_and_rest[:9], kind_and_rest[9:]
        detail = _present({"params": json.loads(params) if params else None, "error": error, "place": place,
                           "node": node, "message": message, "diffs": json.loads(diffs) if diffs else None,
                           "notes": json.loads(notes) if notes else None})
        db.execute(f"INSERT INTO outcomes (id, {', '.join(OUTCOME_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (oid, key_value(key), run_id, case_rows[case_key], kind_id(db, kind, cache),
                    None if t is None else round(t * 1000),
                    None if duration is None else round(duration * DURATION_UNITS), pack_detail(detail), repro_path))


# schema_version -> the function that brings a store of that version to the next one. A
# version with no entry here (older) or above SCHEMA_VERSION (newer) is refused by name.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _pack_version_1_specs, 2: _add_side_and_error, 3: _kinds_and_packed_details,
}


def prepare_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema in an empty database, migrate an older one, refuse anything else."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "meta" not in tables:
        raise UsageError(f"{path} is an SQLite database but not an fx-conform record store (it has no meta table)")
    if not tables:
        # IF NOT EXISTS and the guarded insert let two processes create the same store at once
        schema = SCHEMA
        for what in ("TABLE", "INDEX", "VIEW"):
            schema = schema.replace(f"CREATE {what} ", f"CREATE {what} IF NOT EXISTS ")
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
