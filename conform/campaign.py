"""Campaigns: draw cases with hypothesis, check them against every selected transform,
record the outcomes, shrink each new divergence, and write the report.

Parallelism comes from the standard library's process pool: each worker process runs its
own hypothesis-driven loop (its own seeds, its own JSONL part) until the budget or its
share of ``max_cases`` is spent; the parent merges the parts.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import random
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from conform import bugreport, known, record, report
from conform.case import Case
from conform.engine import Prepared, check, finish_outcome, prepare
from conform.errors import UsageError
from conform.oracles import partition_z3
from conform.outcome import Outcome, Verdict, stable_key
from conform.registry import TransformSpec, select
from generators.sources import configured_source, source_names

DEFAULT_BUDGET_S = 60.0
BATCH_EXAMPLES = 200


@dataclasses.dataclass(frozen=True)
class CampaignConfig:
    """Everything a campaign needs; JSON-able so it crosses into worker processes."""

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

    def validate(self) -> CampaignConfig:
        """Check every field; raise :class:`UsageError` on the first bad one."""
        select(list(self.transforms))
        valid = source_names()
        for name in self.sources:
            if name not in valid:
                raise UsageError(f"unknown source {name!r}", choices=valid)
        if not self.sources:
            raise UsageError("no source selected", choices=valid)
        for device in self.devices:
            if device not in ("cpu", "cuda"):
                raise UsageError(f"unknown device {device!r}", choices=("cpu", "cuda", "all"))
        if self.budget_s is not None and not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise UsageError(f"budget must be a positive number of seconds, got {self.budget_s!r}")
        if self.max_cases is not None and self.max_cases <= 0:
            raise UsageError(f"max-cases must be a positive integer, got {self.max_cases!r}")
        if self.workers <= 0:
            raise UsageError(f"workers must be a positive integer or 'auto', got {self.workers!r}")
        report_dir = Path(self.report_dir)
        if report_dir.exists() and not report_dir.is_dir():
            raise UsageError(f"report path {report_dir} exists and is not a directory")
        return self


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


class _Divergence(Exception):
    """Raised inside the hypothesis body to make it shrink a new divergence."""


_DIVERGENCE_TYPES: dict[str, type[_Divergence]] = {}


def _divergence_type(origin: str) -> type[_Divergence]:
    # hypothesis tells failures apart by exception type and raise site; one type per origin
    # (created once, so every raise of the same origin has the same type) keeps distinct
    # bugs from being shrunk into one another.
    if origin not in _DIVERGENCE_TYPES:
        _DIVERGENCE_TYPES[origin] = type(f"Divergence_{stable_key(origin)}", (_Divergence,), {"origin": origin})
    return _DIVERGENCE_TYPES[origin]


@dataclasses.dataclass
class _WorkerState:
    config: CampaignConfig
    rows: list[TransformSpec]
    recorder: record.Recorder
    deadline: float
    case_limit: int | None
    cases: int = 0
    seen_origins: set[str] = dataclasses.field(default_factory=set)
    seen_cases: set[str] = dataclasses.field(default_factory=set)
    target: tuple[str, str] | None = None  # (transform, origin) while shrinking
    shrink_deadline: float = 0.0
    smallest: tuple[Case, Outcome] | None = None
    original_key: str | None = None

    def exhausted(self) -> bool:
        if time.monotonic() >= self.deadline:
            return True
        return self.case_limit is not None and self.cases >= self.case_limit


def _draw_case(data: st.DataObject, config: CampaignConfig) -> Case:
    name = data.draw(st.sampled_from(config.sources), label="source")
    source = configured_source(name, **config.source_options.get(name, {}))
    spec = data.draw(source.specs(), label="spec")
    case_seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    return Case(source=name, spec=spec, seed=case_seed)


def _draw_params(data: st.DataObject, row: TransformSpec, prepared: Prepared | Outcome) -> dict[str, Any]:
    factory = row.load_params()
    if factory is None or not isinstance(prepared, Prepared):
        return {}
    return data.draw(factory(prepared.graph_module), label=f"params[{row.name}]")


def _body(state: _WorkerState, data: st.DataObject) -> None:
    if state.target is None and state.exhausted():
        return
    if state.target is not None and time.monotonic() > state.shrink_deadline:
        return  # shrinking ran out of time; the smallest failure seen so far stands
    case = _draw_case(data, state.config)
    prepared = prepare(case)
    drawn = [(row, _draw_params(data, row, prepared)) for row in state.rows]
    if state.target is None:
        # every batch starts from hypothesis's simplest example: check each case once
        identity = stable_key(case.key, [params for _, params in drawn])
        if identity in state.seen_cases:
            return
        state.seen_cases.add(identity)
    outcomes: list[Outcome] = []
    if isinstance(prepared, Outcome):
        # the case itself failed to build, trace or run: one outcome, whatever the rows
        outcomes.append(finish_outcome(prepared))
    for row, params in drawn:
        if isinstance(prepared, Outcome) or (state.target is not None and row.name != state.target[0]):
            continue
        outcomes.extend(check(case, row, params=params, devices=state.config.devices, prepared=prepared))
    failing = _failing(state, case, outcomes)
    if failing is not None:
        # one raise site for both modes: hypothesis identifies a failure by its exception
        # type and the line that raised it, and must see the same failure while shrinking
        raise _divergence_type(failing.origin)(failing.describe())


def _failing(state: _WorkerState, case: Case, outcomes: list[Outcome]) -> Outcome | None:
    """The outcome the body must raise for: while shrinking, one with the target origin;
    otherwise the first new divergence of an origin this worker has not shrunk yet."""
    if state.target is not None:
        match = [o for o in outcomes if o.origin == state.target[1]]
        if match:
            state.smallest = (case, match[0])
            return match[0]
        return None
    state.cases += 1
    state.recorder.record(outcomes, case)
    if not state.config.shrink:
        return None
    fresh = [o for o in outcomes if o.verdict is Verdict.FAIL and o.origin not in state.seen_origins]
    if not fresh:
        return None
    first = fresh[0]
    state.seen_origins.update(o.origin for o in fresh)
    state.target = (first.transform, first.origin)
    state.shrink_deadline = time.monotonic() + state.config.shrink_budget_s
    state.smallest = (case, first)
    state.original_key = first.key
    return first


def _run_batch(state: _WorkerState, batch_seed: int) -> None:
    @settings(
        max_examples=BATCH_EXAMPLES,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink) if state.config.shrink else (Phase.generate,),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=settings.default.verbosity.quiet,
    )
    @hypothesis_seed(batch_seed)
    @given(data=st.data())
    def campaign_batch(data: st.DataObject) -> None:
        _body(state, data)

    try:
        campaign_batch()
    except (_Divergence, HypothesisException, ExceptionGroup):
        pass
    finally:
        _record_shrunk(state)


def _record_shrunk(state: _WorkerState) -> None:
    if state.target is None:
        return
    if state.smallest is not None:
        case, outcome = state.smallest
        if outcome.key != state.original_key:
            outcome.notes["shrunk_from"] = state.original_key
            state.recorder.record([outcome], case)
    state.target = None
    state.smallest = None
    state.original_key = None


def run_worker(config: CampaignConfig, index: int) -> dict[str, Any]:
    """One worker's loop; returns its counters. Runs in a pool process or in-process."""
    import torch

    if config.workers > 1:
        torch.set_num_threads(1)
    started = time.monotonic()
    budget = config.budget_s if config.budget_s is not None else float("inf")
    limit = None
    if config.max_cases is not None:
        share, extra = divmod(config.max_cases, config.workers)
        limit = share + (1 if index < extra else 0)
    state = _WorkerState(
        config=config,
        rows=select(list(config.transforms)),
        recorder=record.Recorder(config.report_dir, f"w{index}"),
        deadline=started + budget,
        case_limit=limit,
    )
    # each worker replays its share of the known divergences' witnesses (stale detection)
    names = {row.name for row in state.rows}
    share = [e for e in known.KNOWN if e.transform in names][index::config.workers]
    witnesses = check_witnesses(share)
    witness_seconds = round(time.monotonic() - started, 3)
    rng = random.Random(f"{config.seed}:{index}")
    batches = 0
    while not state.exhausted():
        _run_batch(state, rng.getrandbits(63))
        batches += 1
    return {"worker": index, "cases": state.cases, "outcomes": state.recorder.count,
            "batches": batches, "seconds": round(time.monotonic() - started, 3),
            "witness_seconds": witness_seconds, "witnesses": witnesses}


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
    status = {e.id: {**e.to_json(), "seen": 0, "stale": None} for e in known.KNOWN}
    for entry_id, result in (witnesses or {}).items():
        if entry_id in status:
            status[entry_id].update(result)
    for o in outcomes:
        if o.known_id in status:
            status[o.known_id]["seen"] += 1
    return status


def finish(report_dir: Path, *, meta: dict[str, Any],
           witnesses: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Merge the parts into results.jsonl, summary.json and index.html; return the summary."""
    outcomes = record.read_parts(report_dir)
    record.write_results(report_dir, outcomes)
    summary = record.summarize(outcomes, meta=meta, known_status=known_status(outcomes, witnesses))
    gaps = partition_z3.summarize_gaps(outcomes)
    if gaps:
        summary["partition_gaps"] = gaps
    record.write_summary(report_dir, summary)
    report.write(report_dir, outcomes, summary)
    bugreport.write_bug_reports(report_dir, outcomes)
    return summary


def run(config: CampaignConfig) -> dict[str, Any]:
    """Run a campaign and write its report; returns the summary document."""
    config.validate()
    report_dir = Path(config.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    record.clear(report_dir)
    started = time.monotonic()
    stats: list[dict[str, Any]] = []
    interrupted = False
    try:
        if config.workers == 1:
            stats.append(run_worker(config, 0))
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(config.workers, mp_context=context) as pool:
                futures = [pool.submit(run_worker, config, i) for i in range(config.workers)]
                stats.extend(f.result() for f in futures)
    except KeyboardInterrupt:
        interrupted = True
    rows = select(list(config.transforms))
    meta = {
        "duration_s": round(time.monotonic() - started, 3),
        "seed": config.seed,
        "budget_s": config.budget_s,
        "max_cases": config.max_cases,
        "workers": config.workers,
        "transforms": [r.name for r in rows],
        "sources": list(config.sources),
        "worker_stats": stats,
        "interrupted": interrupted,
        "environment": record.environment(config.devices),
    }
    witnesses = {k: v for stat in stats for k, v in stat.pop("witnesses", {}).items()}
    return finish(report_dir, meta=meta, witnesses=witnesses)


def auto_workers() -> int:
    return max(1, os.cpu_count() or 1)
