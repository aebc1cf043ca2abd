"""A campaign worker: a process that draws cases, checks them and tells its supervisor.

The worker owns nothing that must survive it. Before every stage (build, eager run, trace,
each implementation's transform, each execution, ...) it tells the supervisor which case and
stage it is about to run, so that when it dies or hangs the supervisor can record that case
as a crash or a timeout of that stage. Outcomes travel to the supervisor, the only writer of
the record store.

Messages, worker to supervisor (tuples, first item the kind)::

    ("ready", pid)                           started
    ("witnesses", {entry id: status})        the known entries' witnesses replayed
    ("begin", case json, transform, params)  about to check this case
    ("claim", identity)                      may this (case, transform, params) be checked?
    ("outcomes", case json, [outcome json])  what checking it found
    ("state", "running" | "shrinking")
    ("batch", transform, seconds, checks, new origins, coverage snapshot or None)
    ("next",)                                which transform should the next batch draw for?
    ("done", stats)                          the share is spent
    ("error", traceback text)                a bug in the harness itself

and supervisor to worker: ``("claim", bool)`` and ``("next", transform)`` answering those,
``("stop",)``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import random
import resource
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import HypothesisException

from conform.case import Case
from conform.outcome import Outcome, Verdict, stable_key

BATCH_EXAMPLES = 100
BATCH_SECONDS = 20.0
MIN_BATCH_SECONDS = 2.0


class StageBoard:
    """The stage a worker is in, kept in memory it shares with its supervisor.

    A check runs a dozen stages; announcing each as a message would wake the supervisor a
    dozen times per check. The worker writes the stage here instead, and the supervisor
    reads it when it needs it: to catch an overrun, or to name the stage a dead worker was
    in. A sequence number, odd while a write is under way, keeps a read from mixing two
    writes (the memory outlives the worker, so a dead worker's last stage stays readable).
    """

    SIZE = 128

    def __init__(self, context: Any) -> None:
        self._name = context.RawArray(ctypes.c_char, self.SIZE)
        self._numbers = context.RawArray(ctypes.c_double, 3)  # sequence, started, limit (< 0: none)

    def write(self, name: str | None, limit: float | None = None) -> None:
        numbers = self._numbers
        numbers[0] += 1
        self._name.value = (name or "").encode("ascii", "replace")[:self.SIZE - 1]
        numbers[1] = time.monotonic()
        numbers[2] = -1.0 if limit is None else float(limit)
        numbers[0] += 1

    def read(self) -> tuple[str | None, float, float | None]:
        """``(stage or None, when it started (time.monotonic), its limit in seconds or None)``."""
        numbers = self._numbers
        for _ in range(1000):
            sequence = numbers[0]
            if sequence % 2:
                continue
            name, started, limit = self._name.value, numbers[1], numbers[2]
            if numbers[0] == sequence:
                return name.decode("ascii", "replace") or None, started, None if limit < 0 else limit
        return None, 0.0, None


class Channel:
    """The worker's end of its pipe to the supervisor, and of its :class:`StageBoard`
    (stages go there rather than down the pipe)."""

    #: messages after which the worker is between stages
    _CLEARS = frozenset({"begin", "idle", "outcomes"})

    def __init__(self, conn: Connection, board: StageBoard) -> None:
        self.conn = conn
        self.board = board
        self.stop_requested = False
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            if message[0] in self._CLEARS:
                self.board.write(None)
            self.conn.send(message)

    def stage(self, name: str, limit: float | None) -> None:
        self.board.write(name, limit)

    def _drain(self, *, block: bool) -> tuple[Any, ...] | None:
        while block or self.conn.poll():
            message = self.conn.recv()
            if message[0] == "stop":
                self.stop_requested = True
                return None
            return message
        return None

    def stopping(self) -> bool:
        if not self.stop_requested:
            self._drain(block=False)
        return self.stop_requested

    def ask(self, question: tuple[Any, ...]) -> Any:
        """Send ``question`` and wait for the supervisor's answer of the same kind (None when
        a stop comes first)."""
        if self.stop_requested:
            return None
        self.send(question)
        while True:
            reply = self._drain(block=True)
            if reply is None:
                return None
            if reply[0] == question[0]:
                return reply[1]

    def claim(self, identity: str) -> bool:
        """Ask the supervisor whether this check is new to the campaign."""
        return bool(self.ask(("claim", identity)))


def _die_with_parent(parent: int) -> None:
    """Never outlive the supervisor: the kernel kills this process when its parent dies
    (Linux), and a watcher thread exits when the parent is gone (elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_memory(limit_bytes: int | None) -> None:
    """Bound the address space, so a huge allocation fails at once with an error rather
    than pushing the machine into swap or the out-of-memory killer."""
    if not limit_bytes:
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit_bytes = min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
    except (ValueError, OSError):
        pass


@dataclasses.dataclass
class _Batch:
    """What one hypothesis batch needs; lives while the batch runs."""

    row: Any
    config: Any
    channel: Channel
    seeds: Any  # the strategy of this worker's share of case seeds
    deadline: float
    quota: list[int]  # checks this worker may still start (shared across batches)
    seen: set[str]
    seen_origins: set[str]
    quarantine: frozenset[str] = frozenset()
    checks: int = 0
    new_origins: int = 0
    target: str | None = None  # origin being shrunk
    shrink_deadline: float = 0.0
    smallest: tuple[Case, Outcome] | None = None
    original_key: str | None = None
    strategies: dict[str, Any] = dataclasses.field(default_factory=dict)  # spec strategy by source name

    def specs(self, name: str) -> Any:
        """The spec strategy of source ``name``: the row's focus for the random source
        (:func:`conform.strategies.specs_for`), the configured source's specs otherwise."""
        if name not in self.strategies:
            if name == "random":
                from conform.strategies import specs_for

                self.strategies[name] = specs_for(self.row, name, self.config.source_options.get(name))
            else:
                self.strategies[name] = self.config.source(name).specs()
        return self.strategies[name]

    def over(self) -> bool:
        return time.monotonic() >= self.deadline or self.quota[0] <= 0 or self.channel.stopping()


def _draw(data: st.DataObject, batch: _Batch) -> tuple[Case, Any, dict[str, Any]]:
    """A case for the batch's transform, built and traced, and its parameters."""
    from conform.engine import Prepared, prepare

    config = batch.config
    name = data.draw(st.sampled_from(config.sources), label="source")
    spec = data.draw(batch.specs(name), label="spec")
    case = Case(source=name, spec=spec, seed=data.draw(batch.seeds, label="seed"))
    if case.key in batch.quarantine:
        return case, None, {}
    batch.channel.send(("begin", case.to_json(), batch.row.name, None))
    factory = batch.row.load_params()
    if factory is None and batch.target is None and not _claim(batch, stable_key(case.key, batch.row.name, {})):
        return case, None, {}  # a repeat: not built again
    prepared = prepare(case)
    params: dict[str, Any] = {}
    if factory is not None and isinstance(prepared, Prepared):
        params = data.draw(factory(prepared.graph_module), label=f"params[{batch.row.name}]")
    if factory is not None and batch.target is None and not _claim(batch, stable_key(case.key, batch.row.name, params)):
        return case, None, {}
    return case, prepared, params


def _claim(batch: _Batch, identity: str) -> bool:
    """Whether this worker may check ``identity`` (case, transform, parameters): not a repeat
    of its own, and granted by the supervisor (which remembers what earlier workers in this
    slot checked). A granted claim counts against the quota."""
    if identity in batch.seen:
        return False
    batch.seen.add(identity)
    if not batch.channel.claim(identity):
        return False
    batch.quota[0] -= 1
    return True


def _body(batch: _Batch, data: st.DataObject) -> None:
    from conform.engine import check

    if batch.target is None and batch.over():
        return
    if batch.target is not None and (time.monotonic() > batch.shrink_deadline or batch.channel.stopping()):
        return  # shrinking ran out of time; the smallest failure seen so far stands
    case, prepared, params = _draw(data, batch)
    if prepared is None:
        return  # a repeat, or a case that already killed a worker
    batch.channel.send(("begin", case.to_json(), batch.row.name, params))
    outcomes = check(case, batch.row, params=params, devices=batch.config.devices, prepared=prepared)
    batch.channel.send(("idle",))
    failing = _failing(batch, case, outcomes)
    if failing is not None:
        # one raise site: hypothesis tells failures apart by exception type and raise line
        raise _divergence_type(failing.origin)(failing.describe())


def _failing(batch: _Batch, case: Case, outcomes: list[Outcome]) -> Outcome | None:
    """While shrinking, the outcome with the target origin; otherwise record the outcomes
    and return the first new divergence of an origin this worker has not shrunk yet."""
    if batch.target is not None:
        match = [o for o in outcomes if o.origin == batch.target]
        if match:
            batch.smallest = (case, match[0])
            return match[0]
        return None
    batch.checks += 1
    batch.channel.send(("outcomes", case.to_json(), [o.to_json() for o in outcomes]))
    fresh = [o for o in outcomes if o.verdict is Verdict.FAIL and o.origin not in batch.seen_origins]
    batch.seen_origins.update(o.origin for o in fresh)
    batch.new_origins += len(fresh)
    if not fresh or not batch.config.shrink:
        return None
    first = fresh[0]
    batch.target = first.origin
    batch.shrink_deadline = time.monotonic() + batch.config.shrink_budget_s
    batch.smallest = (case, first)
    batch.original_key = first.key
    batch.channel.send(("state", "shrinking"))
    return first


class _Divergence(Exception):
    """Raised inside the hypothesis body to make it shrink a new divergence."""


_DIVERGENCE_TYPES: dict[str, type[_Divergence]] = {}


def _divergence_type(origin: str) -> type[_Divergence]:
    # one exception type per origin, so distinct bugs are never shrunk into one another
    if origin not in _DIVERGENCE_TYPES:
        _DIVERGENCE_TYPES[origin] = type(f"Divergence_{stable_key(origin)}", (_Divergence,), {"origin": origin})
    return _DIVERGENCE_TYPES[origin]


def _run_batch(batch: _Batch, batch_seed: int, database: Any) -> None:
    config = batch.config

    @settings(
        max_examples=BATCH_EXAMPLES,
        # never the environment's profile (hypothesis derandomizes under CI=true): a batch
        # draws from its own seed, the same on every machine and backend
        derandomize=False,
        deadline=None,
        database=database,
        phases=(Phase.reuse, Phase.generate, Phase.shrink) if config.shrink else (Phase.reuse, Phase.generate),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=settings.default.verbosity.quiet,
    )
    @hypothesis_seed(batch_seed)
    @given(data=st.data())
    def campaign_batch(data: st.DataObject) -> None:
        _body(batch, data)

    # one example database entry per transform, whatever the batch: the next campaign replays
    # the failures this one found first
    campaign_batch._hypothesis_internal_database_key = f"fx-conform/{batch.row.name}".encode()
    try:
        campaign_batch()
    except (_Divergence, HypothesisException, ExceptionGroup):
        pass
    finally:
        _record_shrunk(batch)


def _record_shrunk(batch: _Batch) -> None:
    if batch.target is None:
        return
    if batch.smallest is not None:
        case, outcome = batch.smallest
        if outcome.key != batch.original_key:
            outcome.notes["shrunk_from"] = batch.original_key
            batch.channel.send(("outcomes", case.to_json(), [outcome.to_json()]))
    batch.target = None
    batch.smallest = None
    batch.original_key = None
    batch.channel.send(("state", "running"))


def _seeds(index: int, workers: int, shard: tuple[int, int] | None) -> Any:
    """The case seeds this worker draws: its own residue class (:func:`conform.shards.seed_share`),
    disjoint from the other workers' and shards', so no two of them check the same case and
    none draws a case only to throw it away."""
    from conform.shards import Shard, seed_share

    stride, offset = seed_share(Shard(*shard) if shard is not None else None, workers, index)
    return st.integers(0, (2**31 - 1 - offset) // stride).map(lambda k: offset + stride * k)


def _no_source_constants() -> None:
    """Hypothesis mixes literals of the project's loaded modules into its draws, a pool that
    depends on which modules a process happened to import: a local worker and a Ray task
    would then draw different cases from one seed. Campaign draws come from the vocabulary
    alone."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - a hypothesis without the pool
        return
    if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


def run_share(channel: Channel, payload: dict[str, Any]) -> dict[str, Any]:
    """The worker's loop: batches of draws, one transform per batch, until the budget, its
    quota or a stop; its share of the known entries' witnesses is replayed after the first."""
    from conform import campaign, execute
    from conform.registry import select

    config = campaign.CampaignConfig.from_json(payload["config"])
    index, generation = payload["index"], payload.get("generation", 0)
    started = time.monotonic()
    deadline = started + payload["seconds"] if payload.get("seconds") is not None else float("inf")
    execute.configure_limits(cap=config.stage_timeout_s)
    execute.set_stage_listener(channel.stage)
    _no_source_constants()
    rows = select(list(config.transforms))
    pending_witnesses = list(payload.get("witnesses") or ())

    def replay_witnesses() -> None:
        # after the first batch, so that a short campaign checks cases before it spends its
        # budget on stale detection
        from conform import known

        entries = known.by_id()
        channel.send(("witnesses", campaign.check_witnesses([entries[i] for i in pending_witnesses if i in entries])))
        pending_witnesses.clear()
    quota = [payload["quota"] if payload.get("quota") is not None else sys.maxsize]
    database = DirectoryBasedExampleDatabase(config.database) if config.database else None
    rng = random.Random(f"{config.seed}:{index}:{generation}")
    seeds = _seeds(index, config.workers, config.shard)
    seen: set[str] = set()
    seen_origins: set[str] = set()
    quarantine = frozenset(payload.get("quarantine", ()))
    batches = checks = 0
    order = list(rows)
    rng.shuffle(order)
    by_name = {row.name: row for row in rows}
    probe = None
    if config.coverage:
        from conform.coverage_probe import CoverageProbe

        probe = CoverageProbe(rows, seed=config.seed + index)
        probe.start()
    while time.monotonic() < deadline and quota[0] > 0 and not channel.stopping():
        # a campaign bounded by --max-cases is reproducible: transforms take turns; with a
        # budget the supervisor's scheduler gives more batches to what still finds new things
        name = channel.ask(("next",)) if config.max_cases is None else None
        if name is None and channel.stop_requested:
            break
        row = by_name.get(name) or order[batches % len(order)]
        # batches shrink with what is left of the budget, so the scheduler gets to steer
        # a short campaign too; a --max-cases campaign ends its batches by count alone, so
        # the same seed draws the same cases however fast the machine is
        length = min(BATCH_SECONDS, max(MIN_BATCH_SECONDS, (deadline - time.monotonic()) / 5))
        batch_deadline = deadline if config.max_cases is not None else min(deadline, time.monotonic() + length)
        batch = _Batch(row=row, config=config, channel=channel, seeds=seeds,
                       deadline=batch_deadline, quota=quota,
                       seen=seen, seen_origins=seen_origins, quarantine=quarantine)
        batch_started = time.monotonic()
        _run_batch(batch, rng.getrandbits(63), database)
        batches += 1
        checks += batch.checks
        channel.send(("batch", row.name, round(time.monotonic() - batch_started, 3), batch.checks,
                      batch.new_origins, probe.snapshot() if probe is not None else None))
        if pending_witnesses and not channel.stopping():
            replay_witnesses()
    if probe is not None:
        probe.stop()
    if pending_witnesses and not channel.stopping() and time.monotonic() < deadline:
        replay_witnesses()  # a quota spent in the first batch
    return {"worker": index, "generation": generation, "checks": checks, "batches": batches,
            "seconds": round(time.monotonic() - started, 3)}


def replay_one(channel: Channel, payload: dict[str, Any]) -> dict[str, Any]:
    """Check one recorded case again (a case that killed a worker), nothing else."""
    from conform import execute
    from conform.engine import check

    job = payload["replay"]
    execute.set_stage_listener(channel.stage)
    case = Case.from_json(job["case"])
    channel.send(("begin", job["case"], job["transform"], job["params"]))
    outcomes = check(case, job["transform"], params=job["params"] or {})
    channel.send(("replayed", [o.to_json() for o in outcomes]))
    return {"worker": payload["index"], "replay": True}


def worker_main(conn: Connection, payload: dict[str, Any], board: StageBoard) -> None:
    """Entry point of a worker process (spawned by the supervisor)."""
    channel = Channel(conn, board)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent(payload["parent"])
        _limit_memory(payload.get("memory_bytes"))
        import torch

        torch.set_num_threads(payload.get("threads", 1))
        from conform import plugins

        plugins.load(payload.get("plugins", ()), cases=payload.get("cases", ()))
        channel.send(("ready", os.getpid()))
        stats = replay_one(channel, payload) if payload.get("replay") else run_share(channel, payload)
        channel.send(("done", stats))
    except BaseException:
        try:
            channel.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()
