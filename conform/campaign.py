"""Campaigns: workers draw cases with hypothesis and check them, a supervisor records what
they find, shrinks nothing itself, and writes the report.

:func:`run` starts a :class:`~conform.supervisor.Supervisor`, which runs every case in a
worker process (:mod:`conform.worker`), one per core by default, and is the only writer of
the record. A case that crashes or hangs its worker costs that worker, not the campaign.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from conform import bugreport, known, record, report, shards
from conform.engine import check
from conform.errors import UsageError
from conform.oracles import partition_z3
from conform.outcome import Outcome
from conform.registry import select
from conform.store import Store
from generators.sources import (
    Source,
    SpecError,
    configured_source,
    parse_factory,
    resolve_factory,
    source_names,
    trust_factory,
)

DEFAULT_BUDGET_S = 60.0
#: Per-transform coverage of the last run (line lists and series), read by the report.
COVERAGE = "coverage.json"
#: Share of the machine's memory the workers may address together.
MEMORY_SHARE = 0.8


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@dataclasses.dataclass(frozen=True)
class CampaignConfig:
    """Everything a campaign needs; JSON-able so it crosses into worker processes.

    ``cases`` are ``"module:function"`` case factories named by the user (``--case``);
    ``shard`` is ``(i, n)``, 1-based; ``stage_timeout_s`` caps every stage's time limit;
    ``database`` is hypothesis' example database directory (None: none); ``plugins`` are
    modules loaded in every worker; ``memory_mb`` bounds each worker's address space
    (None: an equal share of 80 % of the machine's memory).
    """

    transforms: tuple[str, ...] = ()
    sources: tuple[str, ...] = ("random",)
    devices: tuple[str, ...] = ("cpu",)
    budget_s: float | None = DEFAULT_BUDGET_S
    max_cases: int | None = None
    seed: int = 0
    workers: int = 1
    report_dir: str = "reports"
    shrink: bool = True
    shrink_budget_s: float = 30.0
    source_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    cases: tuple[str, ...] = ()
    shard: tuple[int, int] | None = None
    stage_timeout_s: float | None = None
    database: str | None = None
    plugins: tuple[str, ...] = ()
    memory_mb: int | None = None
    force: bool = False  # write into a non-empty directory fx-conform did not create
    coverage: bool = True  # measure coverage of each transform's modules and steer by it
    backend: str = "local"  # "local" (worker processes here) or "ray"
    address: str | None = None  # the Ray cluster to join ("auto", "HOST:PORT"); None starts one

    def source(self, name: str) -> Source:
        """The configured source ``name`` (the factory source draws from :attr:`cases`)."""
        options = dict(self.source_options.get(name, {}))
        if name == "factory":
            options["names"] = tuple(self.cases)
        return configured_source(name, **options)

    def trust_cases(self) -> None:
        """Trust the factories named by :attr:`cases` in this process."""
        for path in self.cases:
            trust_factory(path)

    def validate(self) -> CampaignConfig:
        """Check every field; raise :class:`UsageError` on the first bad one."""
        select(list(self.transforms))
        valid = source_names()
        for name in self.sources:
            if name not in valid:
                raise UsageError(f"unknown source {name!r}", choices=valid)
        if not self.sources:
            raise UsageError("no source selected", choices=valid)
        for path in self.cases:
            try:
                parse_factory(path)
            except SpecError:
                raise UsageError(f"--case {path!r} is not a 'MODULE:FUNCTION' name of a case factory") from None
        if "factory" in self.sources and not self.cases:
            raise UsageError("the factory source has no cases to draw: name them with --case MODULE:FUNCTION")
        if "factory" in self.sources:
            # the person named these functions: import them now, so a typo is one clear
            # error instead of a crash recorded for every case
            self.trust_cases()
            for path in self.cases:
                try:
                    resolve_factory(path)
                except (ImportError, SpecError) as exc:
                    raise UsageError(f"--case {path}: cannot load it ({type(exc).__name__}: {exc})") from None
        for name in self.sources:
            # a source that cannot draw a spec would keep hypothesis searching forever
            try:
                empty = self.source(name).specs().is_empty
            except (ValueError, TypeError, KeyError) as exc:
                raise UsageError(f"source {name!r}: {str(exc).strip(chr(39) + chr(34))}") from None
            if empty:
                raise UsageError(f"source {name!r} has no cases to draw")
        for device in self.devices:
            if device not in ("cpu", "cuda"):
                raise UsageError(f"unknown device {device!r}", choices=("cpu", "cuda", "all"))
        if self.budget_s is not None and not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise UsageError(f"budget must be a positive number of seconds, got {self.budget_s!r}")
        if self.max_cases is not None and self.max_cases <= 0:
            raise UsageError(f"max-cases must be a positive integer, got {self.max_cases!r}")
        if self.workers <= 0:
            raise UsageError(f"workers must be a positive integer or 'auto', got {self.workers!r}")
        if self.stage_timeout_s is not None and not (self.stage_timeout_s > 0 and math.isfinite(self.stage_timeout_s)):
            raise UsageError(f"stage timeout must be a positive number of seconds, got {self.stage_timeout_s!r}")
        if self.shard is not None:
            shards.Shard(*self.shard)
        if self.backend not in ("local", "ray"):
            raise UsageError(f"unknown backend {self.backend!r}", choices=("local", "ray"))
        report_dir = Path(self.report_dir)
        if report_dir.exists() and not report_dir.is_dir():
            raise UsageError(f"report path {report_dir} exists and is not a directory")
        return self

    def capped(self) -> tuple[CampaignConfig, str | None]:
        """This config with ``workers`` capped at the core count and at ``max_cases``, and a
        one-line note saying so when it was."""
        # a Ray cluster's cores are not this machine's: there only the case count caps
        cores = (os.cpu_count() or 1) if self.backend == "local" else self.workers
        limit = min(cores, self.max_cases) if self.max_cases is not None else cores
        if self.workers <= limit:
            return self, None
        why = f"{cores} cores" if limit == cores else f"--max-cases {self.max_cases}"
        note = f"note: --workers {self.workers} capped at {limit} ({why})"
        return dataclasses.replace(self, workers=limit), note

    def memory_bytes(self) -> int | None:
        if self.memory_mb is not None:
            return self.memory_mb * 2**20
        total = _physical_memory()
        return int(total * MEMORY_SHARE / self.workers) if total else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for name in ("transforms", "sources", "devices", "cases", "plugins"):
            if name in values:
                values[name] = tuple(values[name])
        if values.get("shard") is not None:
            values["shard"] = tuple(values["shard"])
        return cls(**values)


def resolve_devices(choice: str) -> tuple[str, ...]:
    """``cpu``, ``cuda`` or ``all`` (CPU plus CUDA when present) as a device tuple."""
    import torch

    if choice == "cpu":
        return ("cpu",)
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' was asked for but no CUDA device is available",
                             choices=("cpu", "all"))
        return ("cpu", "cuda")
    if choice == "all":
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    raise UsageError(f"unknown device {choice!r}", choices=("cpu", "cuda", "all"))


def check_witnesses(entries: list[known.KnownDivergence]) -> dict[str, dict[str, Any]]:
    """Replay the witnesses of ``entries``: ``{id: {"stale": bool, "stale_reason": ...}}``.

    An entry is stale when its witness no longer shows a divergence the entry matches.
    """
    status: dict[str, dict[str, Any]] = {}
    for entry in entries:
        try:
            witness = known.load_witness(entry)
            outcomes = check(witness.case, entry.transform, params=witness.params)
            # overlapping entries classify an outcome under the first match, so ask the
            # entry itself whether the witness still shows its divergence
            stale = not any(o.is_divergence and entry.matches(o) for o in outcomes)
            reason = "the witness now gives: " + "; ".join(f"{o.verdict.value} {o.origin}" for o in outcomes)
        except Exception as exc:
            stale, reason = True, f"the witness cannot run: {type(exc).__name__}: {exc}"
        status[entry.id] = {"stale": stale, **({"stale_reason": reason} if stale else {})}
    return status


def known_status(outcomes: list[Outcome], witnesses: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Every registry entry with how often this run saw it and, when its witness was
    replayed, whether it is stale (``None``: not checked)."""
    status = {e.id: {**e.to_json(), "seen": 0, "stale": None} for e in known.entries()}
    for entry_id, result in (witnesses or {}).items():
        if entry_id in status:
            status[entry_id].update(result)
    for o in outcomes:
        if o.known_id in status:
            status[o.known_id]["seen"] += 1
    return status


def finish(report_dir: Path | str, *, meta: dict[str, Any],
           witnesses: dict[str, dict[str, Any]] | None = None,
           run_ids: list[int] | None = None) -> dict[str, Any]:
    """Write summary.json and index.html for the latest run in the store (or for the runs
    ``run_ids``, e.g. the shards a merge brought in); return the summary.

    The summary counts what those runs saw (outcomes they recorded first and outcomes
    they saw again); ``history`` lists every run in the store with its counts. A run still
    open (a :class:`~conform.record.Recorder` that began its own) is closed with ``meta``
    and the known-divergence status.
    """
    report_dir = Path(report_dir)
    with Store.open(report_dir) as store:
        latest = store.latest_run()
        ids = list(run_ids) if run_ids is not None else ([] if latest is None else [latest])
        outcomes: list[Outcome] = []
        keys: set[str] = set()
        for run_id in ids:
            for o in store.outcomes(run_id):
                if o.key not in keys:
                    keys.add(o.key)
                    outcomes.append(o)
        status = known_status(outcomes, witnesses)
        for run_id in ids:
            if store.run(run_id)["status"] == "running":
                store.end_run(run_id, meta, status)
        runs = store.runs()
    history = [{"id": r["id"], "run_id": r["id"], "started": _iso(r["started"]), "finished": _iso(r["finished"]),
                "status": r["status"], "seed": r["meta"].get("seed"), "shard": r["meta"].get("shard"),
                "duration_s": r["meta"].get("duration_s"), "cases": r["counts"].get("cases", 0),
                "counts": r["counts"]} for r in runs]
    summary = record.summarize(outcomes, meta=meta, known_status=status)
    summary["run_ids"] = ids
    summary["history"] = history
    this = [r for r in runs if r["id"] in ids]
    if this:
        summary["started"] = _iso(min(r["started"] for r in this))
    if summary.get("duration_s"):
        summary["cases_per_s"] = round(summary["cases"] / summary["duration_s"], 3)
    if summary.get("error"):
        summary["crashed"] = summary["error"].strip().splitlines()[-1][:300]
    reached = sorted({k for k, v in status.items() if v.get("seen")})
    summary["known_reached"], summary["known_total"] = len(reached), len(status)
    summary["known_unreached"] = sorted(set(status) - set(reached))
    gaps = partition_z3.summarize_gaps(outcomes)
    if gaps:
        summary["partition_gaps"] = gaps
    record.write_summary(report_dir, summary)
    coverage = None
    coverage_path = report_dir / COVERAGE
    if coverage_path.exists():
        try:
            coverage = json.loads(coverage_path.read_text())
        except ValueError:
            coverage = None
    bugs = bugreport.write_bug_reports(report_dir, outcomes)
    report.write(report_dir, outcomes, summary, history=history, coverage=coverage)
    record.add_generated(report_dir, [record.SUMMARY, record.INDEX, *bugs,
                                      *(p.with_suffix(".py") for p in bugs if p.with_suffix(".py").exists())])
    return summary


def _iso(stamp: float | None) -> str | None:
    import datetime

    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


def run(config: CampaignConfig, *, progress: Any = None) -> dict[str, Any]:
    """Run a supervised campaign and write its report; returns the summary document.

    The summary's ``interrupted`` is the signal's name when SIGINT or SIGTERM stopped the
    campaign, and ``error`` holds why it could not finish (a harness traceback, or every
    worker lost), else None.
    """
    from conform.supervisor import Supervisor

    config.validate()
    report_dir = Path(config.report_dir)
    record.prepare_report_dir(report_dir, force=config.force)
    started = time.monotonic()
    rows = select(list(config.transforms))
    names = {row.name for row in rows}
    entries = [e for e in known.entries() if e.transform in names]
    shares = [entries[i::config.workers] for i in range(config.workers)]
    meta = {"seed": config.seed, "budget_s": config.budget_s, "max_cases": config.max_cases,
            "workers": config.workers, "shard": shards.Shard(*config.shard).label if config.shard else None,
            "transforms": [r.name for r in rows], "sources": list(config.sources)}
    with Store.open(report_dir) as store:
        run_id = store.begin_run(meta)

        def write(outcomes: list[Outcome], case: Any) -> None:
            store.record(run_id, outcomes, case, t=outcomes[0].notes.get("t") if outcomes else None)

        if config.backend == "ray":
            from conform import plugins, ray_backend

            result = ray_backend.run(config, write, address=config.address, witnesses=shares,
                                     plugin_names=tuple(dict.fromkeys([*config.plugins, *plugins.loaded()])),
                                     progress=progress)
        else:
            supervisor = Supervisor(config, write, progress=progress, witnesses=shares, plugins=config.plugins)
            result = supervisor.run()
    meta.update({
        "duration_s": round(time.monotonic() - started, 3),
        "worker_stats": result.stats,
        "checks": result.checks,
        "cut_at_stop": result.cut,
        "interrupted": result.interrupted,
        "error": result.error,
        "environment": record.environment(config.devices),
        "scheduler": result.scheduler,
        "backend": config.backend,
        **({"ray_lost": result.lost} if result.lost else {}),
    })
    if result.coverage is not None:
        meta["coverage"] = result.coverage.summary()
        coverage_path = report_dir / COVERAGE
        coverage_path.write_text(json.dumps(result.coverage.report(), sort_keys=True))
        record.add_generated(report_dir, [coverage_path])
    return finish(report_dir, meta=meta, witnesses=result.witnesses)


def auto_workers() -> int:
    return max(1, os.cpu_count() or 1)
