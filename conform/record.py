"""Recording outcomes and looking after the report directory.

Layout of a report directory::

    reports/
      conform.sqlite               the record store (conform/store.py): every run, case and
                                   outcome, appended to night after night
      repro/<key>.py               a standalone repro per divergence
      summary.json                 counts, divergences, environment, duration of the latest run
      index.html                   the conformance report
      .fx-conform-manifest.json    the files fx-conform generated here (what a new run may
                                   replace)

A run deletes only what it wrote: :func:`prepare_report_dir` removes the regenerated files
the manifest lists (never the store, never a repro an outcome points to, never a file it
did not write), and refuses a non-empty directory fx-conform did not create unless forced.
``results.jsonl`` and ``parts/`` of an older fx-conform are imported into the store, kept,
and never written again.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from conform import jsonl
from conform.case import Case
from conform.errors import UsageError
from conform.outcome import Outcome, Verdict
from conform.store import FILENAME as STORE
from conform.store import REPRO, Store

SUMMARY = "summary.json"
INDEX = "index.html"
MANIFEST = ".fx-conform-manifest.json"
#: Files that keep an empty directory in version control (the repository's own reports/).
PLACEHOLDERS = frozenset({".gitkeep", ".keep", ".gitignore"})
RESULTS = "results.jsonl"  # written by older versions; read and imported, never written
PARTS = "parts"


class Recorder:
    """Records outcomes into the report directory's store, in one run.

    Without ``run_id`` the recorder begins a run of its own (closed by
    :func:`conform.campaign.finish`); worker processes of one campaign pass the run id the
    campaign began, each opening its own connection.
    """

    def __init__(self, report_dir: Path | str, name: str | None = None, *, run_id: int | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.report_dir = Path(report_dir)
        self.name = name or f"{os.getpid()}"
        self.store = Store.open(self.report_dir)
        self.run_id = run_id if run_id is not None else self.store.begin_run({"recorder": self.name, **(meta or {})})
        self.count = 0

    def record(self, outcomes: Iterable[Outcome], case: Case | None = None) -> list[Outcome]:
        """Store ``outcomes``; returns those the store did not have yet."""
        outcomes = list(outcomes)
        self.count += len(outcomes)
        return self.store.record(self.run_id, outcomes, case) if outcomes else []

    def close(self) -> None:
        self.store.close()


def legacy_files(report_dir: Path) -> list[Path]:
    """The JSONL results an older fx-conform left in ``report_dir``: ``results.jsonl``, or
    its per-worker parts when it was never merged."""
    merged = report_dir / RESULTS
    if merged.is_file():
        return [merged]
    return sorted((report_dir / PARTS).glob("results-*.jsonl")) if (report_dir / PARTS).is_dir() else []


def import_jsonl(store: Store, path: Path, *, meta: dict[str, Any] | None = None,
                 warn: jsonl.Warn | None = None) -> tuple[int, int]:
    """Import a JSONL results file into ``store`` as a run of its own; adds, never
    deletes. Importing the same content again adds nothing and returns the earlier run.
    Returns ``(run id, outcomes new to the store)``."""
    outcomes = jsonl.read_jsonl(path, **({"warn": warn} if warn else {}))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    source = str(path.resolve())
    for run in store.runs():
        if run["meta"].get("imported_from") == source and run["meta"].get("imported_sha256") == digest:
            return run["id"], 0
    run_id = store.begin_run({**(meta or {}), "imported_from": source, "imported_sha256": digest})
    new = store.record(run_id, outcomes, None, t=0.0)
    store.end_run(run_id, {"imported_outcomes": len(outcomes)}, {})
    return run_id, len(new)


_LEGACY_META = ("duration_s", "seed", "budget_s", "max_cases", "workers", "transforms", "sources", "environment")


def import_legacy(store: Store, report_dir: Path) -> list[int]:
    """Import the JSONL results an older version left in ``report_dir`` (its summary.json
    gives the run's metadata and witness status); the files stay. Returns the run ids."""
    meta: dict[str, Any] = {}
    known: dict[str, dict[str, Any]] = {}
    if (report_dir / SUMMARY).exists():
        summary = jsonl.read_summary(report_dir / SUMMARY)
        meta = {k: summary[k] for k in _LEGACY_META if k in summary}
        known = summary.get("known", {})
    run_ids = []
    for path in legacy_files(report_dir):
        run_id, _ = import_jsonl(store, path, meta=meta)
        if known and not store.known_status(run_id):
            store.end_run(run_id, {}, known)
        run_ids.append(run_id)
    return run_ids


def read_results(report_dir: Path | str) -> list[Outcome]:
    """Every outcome recorded in ``report_dir``: its store, and JSONL results an older
    version left there (validated; a malformed line raises :class:`UsageError`)."""
    report_dir = Path(report_dir)
    if not report_dir.is_dir():
        raise UsageError(f"report directory {report_dir} does not exist")
    outcomes: list[Outcome] = []
    if (report_dir / STORE).exists():
        with Store.open(report_dir, create=False) as store:
            outcomes.extend(store.outcomes())
    seen = {o.key for o in outcomes}
    for path in legacy_files(report_dir):
        outcomes.extend(o for o in jsonl.read_jsonl(path) if o.key not in seen)
    if not outcomes and not (report_dir / STORE).exists():
        raise UsageError(f"no results in {report_dir}: expected {STORE} (or an older {RESULTS})")
    return outcomes


# ---- the report directory -----------------------------------------------------------------

def read_manifest(report_dir: Path) -> dict[str, Any] | None:
    """The manifest of ``report_dir``, or None when it has none."""
    path = report_dir / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable fx-conform manifest ({exc}); "
                         "expected the JSON object fx-conform writes") from None
    if not isinstance(data, dict) or not isinstance(data.get("generated", []), list) \
            or not all(isinstance(p, str) for p in data.get("generated", [])):
        raise UsageError(f"{path} is not an fx-conform manifest; expected an object whose 'generated' "
                         "lists file paths")
    return data


def add_generated(report_dir: Path, paths: Iterable[Path | str]) -> None:
    """Note ``paths`` (in ``report_dir``) in its manifest as files a new run regenerates."""
    manifest = read_manifest(report_dir) or {}
    generated = set(manifest.get("generated", []))
    for p in paths:
        p = Path(p)
        rel = p.resolve().relative_to(report_dir.resolve()) if p.is_absolute() else p
        generated.add(rel.as_posix())
    write_manifest(report_dir, sorted(generated))


def write_manifest(report_dir: Path, generated: list[str]) -> None:
    import conform

    document = {"generator": "fx-conform", "version": conform.__version__, "store": STORE,
                "generated": generated}
    with jsonl.atomic_writer(report_dir / MANIFEST) as fh:
        fh.write(json.dumps(document, indent=2) + "\n")


def _ours(report_dir: Path) -> bool:
    return ((report_dir / MANIFEST).exists() or (report_dir / STORE).exists()
            or (bool(legacy_files(report_dir)) and (report_dir / SUMMARY).exists()))


def _check_writable(report_dir: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".fx-conform-probe.", dir=report_dir)
    except OSError as exc:
        raise UsageError(f"report directory {report_dir} is not writable ({exc.strerror or exc}); "
                         "pick another --report directory") from None
    os.close(fd)
    os.unlink(probe)


def prepare_report_dir(path: Path | str, *, force: bool) -> None:
    """Make ``path`` ready for a new run, deleting only what fx-conform wrote there.

    Creates the directory; refuses (:class:`UsageError`) a path that is a file, cannot be
    created or written, or a non-empty directory fx-conform did not create (no manifest,
    no store) unless ``force``; imports an older version's ``results.jsonl`` into the
    store (and keeps the file); removes the regenerated files the manifest lists
    (index.html, summary.json, bugs/, JUnit), never the store or a repro it points to.
    """
    report_dir = Path(path)
    if report_dir.exists() and not report_dir.is_dir():
        raise UsageError(f"report path {report_dir} exists and is not a directory")
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create report directory {report_dir}: {exc.strerror or exc}") from None
    _check_writable(report_dir)
    # a placeholder that keeps an empty directory in version control is not the user's data
    entries = [p for p in report_dir.iterdir() if p.name not in PLACEHOLDERS]
    if entries and not _ours(report_dir) and not force:
        raise UsageError(f"report directory {report_dir} is not empty and was not written by fx-conform "
                         f"(no {MANIFEST} or {STORE}); pick a new or empty directory, or pass --force to "
                         "add the report next to what is there")
    manifest = read_manifest(report_dir)
    if (report_dir / STORE).exists():
        Store.open(report_dir).close()  # a store this version cannot read is refused before anything changes
    legacy = legacy_files(report_dir)
    if legacy:
        with Store.open(report_dir) as store:
            import_legacy(store, report_dir)
    clear(report_dir)
    if manifest is None:
        write_manifest(report_dir, [])


def clear(report_dir: Path) -> None:
    """Remove the regenerated files the manifest of ``report_dir`` lists (never anything
    else: not the store, not repro scripts, not a file fx-conform did not write)."""
    manifest = read_manifest(report_dir)
    if manifest is None:
        return
    root = report_dir.resolve()
    for rel in manifest.get("generated", []):
        target = (report_dir / rel).resolve()
        if root not in target.parents or target.name in (STORE, MANIFEST) or target.parent.name == REPRO:
            continue  # a manifest never makes a run delete outside the directory or the store
        if target.is_file():
            target.unlink()
        elif target.is_dir() and not any(target.iterdir()):
            target.rmdir()


def environment(devices: Iterable[str] = ("cpu",)) -> dict[str, Any]:
    import conform

    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "fx_conform": conform.__version__,
        "platform": platform.platform(),
        "devices": list(devices),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


def summarize(outcomes: list[Outcome], *, meta: dict[str, Any] | None = None,
              known_status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary.json document for a list of outcomes. ``divergences`` lists the new ones
    (a known divergence is counted under ``known``; every outcome is in the store)."""
    per_verdict = collections.Counter(o.verdict.value for o in outcomes)
    per_symptom = collections.Counter(o.symptom.value for o in outcomes if o.symptom)
    per_transform: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_source: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        per_transform[o.transform][o.verdict.value] += 1
        per_source[o.source][o.verdict.value] += 1
    divergences = [
        {
            "key": o.key, "case_id": o.case_id, "transform": o.transform, "source": o.source,
            "device": o.device, "stage": o.stage.value if o.stage else None,
            "symptom": o.symptom.value if o.symptom else None, "origin": o.origin,
            "known_id": o.known_id, "repro": o.repro, "node": o.node, "message": o.message,
        }
        for o in outcomes if o.verdict is Verdict.FAIL
    ]
    origins = collections.Counter(d["origin"] for d in divergences)
    cases = {json.dumps([o.source, o.spec, o.seed], sort_keys=True, default=repr) for o in outcomes}
    return {
        "cases": len(cases),
        "outcomes": len(outcomes),
        "counts": dict(per_verdict),
        "symptoms": dict(per_symptom),
        "per_transform": {k: dict(v) for k, v in sorted(per_transform.items())},
        "per_source": {k: dict(v) for k, v in sorted(per_source.items())},
        "new_divergences": sum(1 for o in outcomes if o.verdict is Verdict.FAIL),
        "new_origins": dict(origins),
        "divergences": divergences,
        "known": known_status or {},
        **(meta or {}),
    }


def write_summary(report_dir: Path, summary: dict[str, Any]) -> Path:
    path = report_dir / SUMMARY
    with jsonl.atomic_writer(path) as fh:
        fh.write(json.dumps(summary, indent=2, sort_keys=True, default=repr))
    return path
