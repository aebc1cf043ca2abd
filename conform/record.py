"""The record store: append-only JSONL per process, merged into one report.

Layout of a report directory::

    reports/
      parts/results-<name>.jsonl   one per worker process, appended as outcomes arrive
      repro/<key>.py               a standalone repro per divergence
      results.jsonl                every outcome of the run, merged
      summary.json                 counts, divergences, environment, duration
      index.html                   the conformance report

A crash or an interrupt loses nothing already appended: ``conform report`` merges whatever
parts exist.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from conform import repro
from conform.case import Case
from conform.errors import UsageError
from conform.outcome import Outcome, Verdict

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
PARTS = "parts"
REPRO = "repro"


class Recorder:
    """Appends outcomes to ``<report>/parts/results-<name>.jsonl`` and writes a repro script
    for every divergence."""

    def __init__(self, report_dir: Path | str, name: str | None = None) -> None:
        self.report_dir = Path(report_dir)
        self.name = name or f"{os.getpid()}"
        self.path = self.report_dir / PARTS / f"results-{self.name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def record(self, outcomes: Iterable[Outcome], case: Case | None = None) -> None:
        lines = []
        for outcome in outcomes:
            if case is not None and outcome.is_divergence and outcome.repro is None:
                try:
                    path = repro.write(outcome, case, self.report_dir / REPRO)
                    outcome.repro = str(path.relative_to(self.report_dir))
                except Exception as exc:  # a case whose source cannot be written still counts
                    outcome.notes["repro_error"] = f"{type(exc).__name__}: {exc}"
            lines.append(json.dumps(outcome.to_json(), default=repr, sort_keys=True))
            self.count += 1
        if lines:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()


def read_jsonl(path: Path) -> list[Outcome]:
    """Outcomes in a JSONL file; a malformed line raises :class:`UsageError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no results file at {path} (run `conform run --report {path.parent}` first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read results file {path}: {exc}") from None
    outcomes = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            outcomes.append(Outcome.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(
                f"{path}:{lineno} is not a valid outcome record ({type(exc).__name__}: {exc}); "
                "expected one JSON object per line as written by `conform run`"
            ) from None
    return outcomes


def read_parts(report_dir: Path) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for part in sorted((report_dir / PARTS).glob("results-*.jsonl")):
        outcomes.extend(read_jsonl(part))
    return outcomes


def read_results(report_dir: Path | str) -> list[Outcome]:
    """The merged results of a report directory, or its parts when it was never merged."""
    report_dir = Path(report_dir)
    if not report_dir.is_dir():
        raise UsageError(f"report directory {report_dir} does not exist")
    merged = report_dir / RESULTS
    if merged.exists():
        return read_jsonl(merged)
    if (report_dir / PARTS).is_dir():
        return read_parts(report_dir)
    raise UsageError(f"no results in {report_dir}: expected {RESULTS} or {PARTS}/results-*.jsonl")


def clear(report_dir: Path) -> None:
    """Remove the previous run's generated files (never anything else) before a new run."""
    for name in (RESULTS, SUMMARY, "index.html"):
        (report_dir / name).unlink(missing_ok=True)
    for sub in (PARTS, REPRO):
        directory = report_dir / sub
        if directory.is_dir():
            for child in directory.iterdir():
                if child.suffix in (".jsonl", ".py"):
                    child.unlink()


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
    """The summary.json document for a list of outcomes."""
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
        for o in outcomes if o.is_divergence
    ]
    origins = collections.Counter(d["origin"] for d in divergences if d["known_id"] is None)
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
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=repr))
    return path


def write_results(report_dir: Path, outcomes: list[Outcome]) -> Path:
    path = report_dir / RESULTS
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for o in outcomes:
            fh.write(json.dumps(o.to_json(), default=repr, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
