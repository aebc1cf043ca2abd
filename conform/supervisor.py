"""The campaign supervisor: owns the clock and the record, and survives whatever a case does.

Cases run only in worker processes (:mod:`conform.worker`), never in the supervisor, even
with one worker. Each worker announces the case and the stage it is about to run; the
supervisor

* records a worker's death (a signal, an abort, the out-of-memory killer) as a crash of the
  case and stage it was on, replays that case once in a fresh process to learn whether it
  kills its worker again, and replaces the worker;
* kills a worker whose stage overruns its limit by far (code that never returns to Python,
  where the in-process alarm cannot fire) and records a timeout of that stage;
* answers claims, so no (case, transform, parameters) is checked twice in a campaign;
* stops the campaign within seconds on SIGINT or SIGTERM, and at the end of the budget;
* is the only writer of the record.

Workers never outlive it: they ask the kernel to kill them when their parent dies.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from conform.case import Case
from conform.outcome import Outcome, Stage, Symptom, Verdict, stable_key

#: How far past its limit a stage may run before its worker is killed (the in-process
#: alarm gets this long to turn the overrun into an ordinary timeout outcome).
GRACE_S = 3.0
#: How long workers get to finish after a stop (budget spent, interrupt) before they are killed.
STOP_GRACE_S = 0.0
BUDGET_GRACE_S = 5.0
#: Consecutive worker losses, with no check completed in between, after which the campaign
#: gives up (per worker slot).
MAX_LOSSES_PER_SLOT = 3

_STAGES = {
    "build": Stage.GENERATE, "eager": Stage.GENERATE, "golden": Stage.GENERATE,
    "trace": Stage.TRACE, "traced": Stage.TRACE,
    "transform-reference": Stage.TRANSFORM_REFERENCE, "transform-upstream": Stage.TRANSFORM_UPSTREAM,
    "execute-reference": Stage.EXECUTE, "execute-upstream": Stage.EXECUTE, "execute": Stage.EXECUTE,
}


def stage_enum(name: str | None) -> Stage:
    """The outcome stage a worker's fine-grained stage name belongs to."""
    if name is None:
        return Stage.GENERATE
    return _STAGES.get(name, Stage.COMPARE)


def signal_name(exitcode: int | None) -> str:
    """``SIGSEGV`` for a process killed by signal 11, ``exit 3`` for an ordinary exit."""
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit {exitcode}"


@dataclasses.dataclass
class _Slot:
    """One worker process and what the supervisor knows of it."""

    index: int
    generation: int
    process: Any
    conn: Connection
    board: Any  # the worker's StageBoard
    replay: dict[str, Any] | None = None
    current: dict[str, Any] | None = None
    state: str = "starting"
    checks: int = 0
    done: bool = False
    killed_for: str | None = None  # "timeout" or "stop" when the supervisor killed it

    def stage_now(self) -> tuple[str | None, float, float | None]:
        """``(stage, started, limit)`` of what the worker is running (stage None: between stages)."""
        return self.board.read()

    @property
    def stage(self) -> str | None:
        return self.stage_now()[0]


@dataclasses.dataclass
class Result:
    """What a supervised campaign did."""

    stats: list[dict[str, Any]]
    witnesses: dict[str, dict[str, Any]]
    interrupted: str | None  # "SIGINT" / "SIGTERM" when a signal stopped it
    error: str | None  # a harness traceback, or why the campaign could not finish
    checks: int
    recorded: int
    cut: int  # checks in flight when the campaign stopped (not recorded)
    coverage: Any = None  # the CoverageAccumulator, when the campaign measured coverage
    scheduler: dict[str, Any] | None = None
    lost: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # cluster tasks that died


class Supervisor:
    """Run a campaign's workers; see the module docstring.

    Args:
        config: the campaign's :class:`~conform.campaign.CampaignConfig`.
        record: called with ``(outcomes, case)`` for every new outcome, in the supervisor.
        progress: an object with ``update(snapshot)`` and ``stop(snapshot)``, or None.
        witnesses: the known entries whose witnesses each worker slot replays first.
    """

    def __init__(self, config: Any, record: Callable[[list[Outcome], Case | None], Any], *,
                 progress: Any = None, witnesses: list[list[Any]] | None = None,
                 plugins: tuple[str, ...] = (), slots: list[int] | None = None,
                 on_batch: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.record = record
        #: the worker slots this supervisor runs (all of them, unless a cluster backend gives
        #: each node its own share)
        self.slot_indices = list(range(config.workers)) if slots is None else list(slots)
        self.on_batch = on_batch
        self.progress = progress
        self.witness_shares = witnesses or [[] for _ in range(config.workers)]
        self.plugins = plugins
        self.context = multiprocessing.get_context("spawn")
        self.slots: dict[int, _Slot] = {}
        self._selector = selectors.DefaultSelector()
        self.claimed: set[str] = set()
        self.quarantine: set[str] = set()
        self.recorded: set[str] = set()
        self.stats: list[dict[str, Any]] = []
        self.witnesses: dict[str, dict[str, Any]] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.checks_by_slot: collections.Counter[int] = collections.Counter()
        self.losses: collections.Counter[int] = collections.Counter()
        self.pending_crash: dict[int, tuple[Outcome, Case]] = {}
        self.latest_new: str | None = None
        self.signal: int | None = None
        self.error: str | None = None
        self.stopping_since: float | None = None
        self.cut = 0
        self.started = time.monotonic()
        self.deadline = self.started + config.budget_s if config.budget_s is not None else None
        from conform.coverage_summary import CoverageAccumulator
        from conform.registry import select
        from conform.scheduler import Scheduler

        rows = select(list(config.transforms))
        self.scheduler = Scheduler([row.name for row in rows], config.seed)
        self.coverage = CoverageAccumulator(rows) if config.coverage else None

    # ---- workers ---------------------------------------------------------------------
    def _quota(self, index: int) -> int | None:
        if self.config.max_cases is None:
            return None
        share, extra = divmod(self.config.max_cases, self.config.workers)
        return share + (1 if index < extra else 0) - self.checks_by_slot[index]

    def _spawn(self, index: int, generation: int, *, replay: dict[str, Any] | None = None) -> None:
        from conform import plugins

        parent, child = self.context.Pipe(duplex=True)
        payload: dict[str, Any] = {
            "config": self.config.to_json(), "index": index, "generation": generation,
            "parent": os.getpid(), "quota": self._quota(index),
            "seconds": None if self.deadline is None else max(0.0, self.deadline - time.monotonic()),
            "witnesses": [e.id for e in self.witness_shares[index]] if generation == 0 and replay is None else [],
            "plugins": list(dict.fromkeys([*self.plugins, *plugins.loaded()])),
            "cases": list(self.config.cases),
            "memory_bytes": self.config.memory_bytes(),
            "threads": 1 if self.config.workers > 1 else max(1, min(4, os.cpu_count() or 1)),
            "replay": replay,
            "quarantine": sorted(self.quarantine),
        }
        from conform.worker import StageBoard, worker_main

        board = StageBoard(self.context)
        process = self.context.Process(target=worker_main, args=(child, payload, board),
                                       name=f"fx-conform-worker-{index}", daemon=True)
        process.start()
        child.close()
        self.slots[index] = _Slot(index=index, generation=generation, process=process, conn=parent,
                                  board=board, replay=replay)
        # one selector for the whole campaign: building one per wait costs more than the wait
        self._selector.register(parent, selectors.EVENT_READ)
        self._selector.register(process.sentinel, selectors.EVENT_READ)

    def _kill(self, slot: _Slot, why: str) -> None:
        slot.killed_for = why
        if slot.process.is_alive():
            slot.process.kill()

    # ---- messages --------------------------------------------------------------------
    def _drain(self, slot: _Slot) -> None:
        try:
            while slot.conn.poll():
                self._handle(slot, slot.conn.recv())
        except (EOFError, OSError):
            pass

    def _handle(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "begin":
            claimed = bool(slot.current and slot.current.get("case") == message[1] and slot.current.get("claimed"))
            slot.current = {"case": message[1], "transform": message[2], "params": message[3], "claimed": claimed}
        elif kind == "idle":
            slot.current = None
        elif kind == "claim":
            ok = self._claim(slot, message[1])
            try:
                slot.conn.send(("claim", ok))
            except OSError:
                pass
        elif kind == "outcomes":
            slot.current = None
            self._record(Case.from_json(message[1]), [Outcome.from_json(o) for o in message[2]])
            self.losses[slot.index] = 0
        elif kind == "replayed":
            self._replayed(slot, [Outcome.from_json(o) for o in message[1]])
        elif kind == "witnesses":
            self.witnesses.update(message[1])
        elif kind in ("state", "ready"):
            slot.state = message[1] if kind == "state" else "running"
        elif kind == "done":
            slot.done = True
            slot.state = "done"
            self.stats.append(message[1])
        elif kind == "error":
            self.error = message[1]
        elif kind == "batch":
            self._batch(*message[1:])
        elif kind == "next":
            try:
                slot.conn.send(("next", self.scheduler.next()))
            except OSError:
                pass

    def _batch(self, transform: str, seconds: float, checks: int, new_origins: int,
               snapshot: dict[str, Any] | None) -> None:
        """A worker finished a batch: fold its coverage in and tell the scheduler how much
        the batch found."""
        if self.on_batch is not None:
            self.on_batch(transform, seconds, checks, new_origins, snapshot)
        new_lines = 0
        if snapshot is not None and self.coverage is not None:
            new_lines = self.coverage.add(snapshot, round(time.monotonic() - self.started, 3)).get(transform, 0)
        self.scheduler.report(transform, seconds=max(seconds, 1e-3), cases=checks, new_lines=new_lines,
                              new_origins=new_origins)

    def _claim(self, slot: _Slot, identity: str) -> bool:
        if self.stopping_since is not None or identity in self.claimed:
            return False
        if slot.current is not None and Case.from_json(slot.current["case"]).key in self.quarantine:
            return False
        self.claimed.add(identity)
        self.checks_by_slot[slot.index] += 1
        if slot.current is not None:
            slot.current["claimed"] = True
        return True

    def _record(self, case: Case | None, outcomes: list[Outcome]) -> None:
        fresh = [o for o in outcomes if o.key not in self.recorded]
        if not fresh:
            return
        t = round(time.monotonic() - self.started, 3)
        for o in fresh:
            o.notes["t"] = t
            self.recorded.add(o.key)
            self.counts[o.verdict.value] += 1
            if o.symptom is Symptom.TIMEOUT:
                self.counts["timeout"] += 1
            if o.symptom is Symptom.CRASH and o.place and o.place.startswith("worker:"):
                self.counts["crash"] += 1
            if o.verdict is Verdict.FAIL:
                self.latest_new = o.origin
        self.record(fresh, case)

    # ---- deaths and hangs ------------------------------------------------------------
    def _lost_outcome(self, slot: _Slot, symptom: Symptom, detail: str, exception: str) -> tuple[Outcome, Case] | None:
        from conform.engine import finish_outcome

        if slot.current is None:
            return None
        case = Case.from_json(slot.current["case"])
        transform = slot.current["transform"] or "-"
        params = slot.current["params"] or {}
        stage_name = slot.stage or "build"
        try:
            case_id = case.id
        except Exception:  # a source that cannot label its own spec still gets recorded
            case_id = f"{case.source}:case#{case.key[:8]}"
        outcome = Outcome(
            key=stable_key(case.source, case.spec, case.seed, transform, params, "cpu", stage_name,
                           symptom.value, exception),
            case_id=case_id, source=case.source, transform=transform, device="cpu",
            verdict=Verdict.FAIL, stage=stage_enum(stage_name), symptom=symptom,
            message=detail, exception=exception, place=f"worker:{stage_name}",
            spec=case.spec, params=params, seed=case.seed,
            notes={"stage": stage_name, "worker": slot.index},
        )
        return finish_outcome(outcome), case

    def _on_exit(self, slot: _Slot) -> None:
        """A worker process ended: record what it was doing if it died, then replace it."""
        self._drain(slot)
        slot.process.join(timeout=1.0)
        code = slot.process.exitcode
        del self.slots[slot.index]
        for watched in (slot.conn, slot.process.sentinel):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(watched)
        slot.conn.close()
        if slot.done and slot.killed_for is None:
            return
        if slot.killed_for == "stop" or self.signal is not None or self.stopping_since is not None:
            if slot.current is not None:
                self.cut += 1
            self._flush_crash(slot.index)
            return
        if slot.killed_for == "timeout":
            limit = slot.stage_now()[2] or 0.0
            lost = self._lost_outcome(
                slot, Symptom.TIMEOUT,
                f"stage {slot.stage} ran past its limit of {limit:g} s and did not come back "
                f"within {GRACE_S:g} s more; its worker was killed", "Timeout")
        else:
            name = signal_name(code)
            lost = self._lost_outcome(
                slot, Symptom.CRASH,
                f"the worker process died ({name}) during stage {slot.stage or 'build'}"
                + (f" of {slot.current['transform']}" if slot.current and slot.current["transform"] else ""),
                name)
        if slot.replay is not None:
            self._replay_died(slot, lost)
        elif lost is not None:
            outcome, case = lost
            self.quarantine.add(case.key)
            # the case is checked: it crashed or hung its worker, which is its outcome
            self.checks_by_slot[slot.index] += 0 if slot.current.get("claimed") else 1
            self.losses[slot.index] = 0
            if slot.killed_for == "timeout":
                self._record(case, [outcome])
            else:
                # replay the case once in a fresh process: does it kill its worker again?
                self.pending_crash[slot.index] = (outcome, case)
                job = {"case": case.to_json(), "transform": slot.current["transform"],
                       "params": slot.current["params"]}
                if job["transform"] not in (None, "-"):
                    self._spawn(slot.index, slot.generation + 1, replay=job)
                    return
                self._flush_crash(slot.index)
        if lost is None:
            self.losses[slot.index] += 1
        if self.losses[slot.index] > MAX_LOSSES_PER_SLOT:
            self.error = self.error or (f"worker {slot.index} was lost {self.losses[slot.index]} times in a row "
                                        "without completing a check; the campaign cannot go on")
            return
        self._respawn(slot)

    def _respawn(self, slot: _Slot) -> None:
        if self.error is None and self._has_time() and (self._quota(slot.index) is None or self._quota(slot.index) > 0):
            self._spawn(slot.index, slot.generation + 1)

    def _replayed(self, slot: _Slot, outcomes: list[Outcome]) -> None:
        pending = self.pending_crash.get(slot.index)
        if pending is not None:
            outcome, _ = pending
            outcome.notes["replay"] = ("the case did not kill its worker when replayed: "
                                       + ", ".join(sorted({f"{o.verdict.value} {o.origin}" for o in outcomes})))
            outcome.notes["kills_worker_on_replay"] = False
        slot.done = True
        self._flush_crash(slot.index)

    def _replay_died(self, slot: _Slot, lost: tuple[Outcome, Case] | None) -> None:
        pending = self.pending_crash.get(slot.index)
        if pending is not None:
            pending[0].notes["kills_worker_on_replay"] = True
            pending[0].notes["replay"] = (f"replayed once in a fresh worker, it killed that one too "
                                          f"({lost[0].exception if lost else signal_name(slot.process.exitcode)}); "
                                          "it is not retried again")
        self._flush_crash(slot.index)
        self._respawn(slot)

    def _flush_crash(self, index: int) -> None:
        pending = self.pending_crash.pop(index, None)
        if pending is not None:
            outcome, case = pending
            self._record(case, [outcome])

    # ---- the loop --------------------------------------------------------------------
    def _has_time(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def _stop_all(self) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        for slot in self.slots.values():
            try:
                slot.conn.send(("stop",))
            except OSError:
                pass

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def run(self) -> Result:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for index in self.slot_indices:
                if self._quota(index) is None or self._quota(index) > 0:
                    self._spawn(index, 0)
            last_update = 0.0
            while self.slots:
                self._tick()
                now = time.monotonic()
                if self.progress is not None and now - last_update >= 0.25:
                    self.progress.update(self.snapshot())
                    last_update = now
        finally:
            for slot in list(self.slots.values()):
                self._kill(slot, "stop")
            for s, h in handlers.items():
                signal.signal(s, h)
        for index in list(self.pending_crash):
            self._flush_crash(index)
        if self.progress is not None:
            self.progress.stop(self.snapshot())
        interrupted = signal.Signals(self.signal).name if self.signal is not None else None
        return Result(stats=sorted(self.stats, key=lambda s: (s.get("worker") or 0, s.get("generation", 0))),
                      witnesses=self.witnesses, interrupted=interrupted, error=self.error,
                      checks=sum(self.checks_by_slot.values()), recorded=len(self.recorded), cut=self.cut,
                      coverage=self.coverage, scheduler=self.scheduler.state())

    def _tick(self) -> None:
        now = time.monotonic()
        if (self.signal is not None or self.error is not None) and self.stopping_since is None:
            self._stop_all()
        if self.deadline is not None and now >= self.deadline and self.stopping_since is None:
            self._stop_all()
        if self.stopping_since is not None:
            grace = BUDGET_GRACE_S if self.signal is None and self.error is None else STOP_GRACE_S
            if now - self.stopping_since > grace:
                for slot in list(self.slots.values()):
                    self._kill(slot, "stop")
        slots = list(self.slots.values())
        ready = {key.fileobj for key, _ in self._selector.select(timeout=0.1)} if slots else set()
        for slot in slots:
            if slot.conn in ready:
                self._drain(slot)
        for slot in slots:
            if slot.process.sentinel in ready or not slot.process.is_alive():
                if self.slots.get(slot.index) is slot:
                    self._on_exit(slot)
            elif slot.killed_for is None:
                stage, started, limit = slot.stage_now()
                if stage is not None and limit is not None and now - started > limit + GRACE_S:
                    self._kill(slot, "timeout")

    def snapshot(self) -> Any:
        """The state the progress display shows."""
        from conform.progress import Snapshot, WorkerState

        workers = []
        for index in self.slot_indices:
            slot = self.slots.get(index)
            if slot is None:
                workers.append(WorkerState(index=index, state="done"))
                continue
            case = None
            if slot.current is not None:
                case = f"{slot.current['case'].get('source')}#{stable_key(slot.current['case'])[:8]}"
            workers.append(WorkerState(index=index, state="replaying" if slot.replay else slot.state,
                                       case=case, transform=slot.current["transform"] if slot.current else None,
                                       stage=slot.stage))
        counts = {"new": self.counts["fail"], "known": self.counts["known"], "pass": self.counts["pass"],
                  "skip": self.counts["skip"], "timeout": self.counts["timeout"], "crash": self.counts["crash"]}
        budget = self.config.budget_s
        return Snapshot(elapsed_s=time.monotonic() - self.started, budget_s=budget,
                        cases=sum(self.checks_by_slot.values()), counts=counts, workers=workers,
                        latest_new_origin=self.latest_new)
