"""Campaigns on a Ray cluster (``conform run --backend ray [--address auto|HOST:PORT]``).

Each worker slot's share of the campaign runs as one Ray task. Inside the task a
:class:`~conform.supervisor.Supervisor` runs that one slot exactly as a local campaign
does (the case in a worker process of its own, announced stage by stage, its crashes and
hangs recorded), so a node survives whatever a case does. Outcomes and coverage stream back
to the driver through a Ray queue; the driver is the only writer of the record store.

A task that dies with its node, or fails for any other reason, is recorded in the run's
metadata (``ray_lost``) and the campaign goes on with the others. The local process pool
stays the default backend; this module imports Ray only when it is used
(``pip install 'fx-conform[ray]'``).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from conform.case import Case
from conform.errors import UsageError
from conform.outcome import Outcome


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("the ray backend needs Ray: pip install 'fx-conform[ray]'") from None
    return ray


def _share(config_json: dict[str, Any], index: int, witness_ids: list[str], plugin_names: list[str],
           queue: Any) -> dict[str, Any]:
    """One slot's share, run in a Ray task: a one-slot supervisor whose record and batch
    reports go to the driver's queue."""
    from conform import known, plugins
    from conform.campaign import CampaignConfig
    from conform.supervisor import Supervisor

    config = CampaignConfig.from_json(config_json)
    plugins.load(plugin_names, cases=config.cases)
    entries = known.by_id()
    shares: list[list[Any]] = [[] for _ in range(config.workers)]
    shares[index] = [entries[i] for i in witness_ids if i in entries]

    def record(outcomes: list[Outcome], case: Case | None) -> None:
        queue.put(("outcomes", case.to_json() if case is not None else None, [o.to_json() for o in outcomes]))

    def on_batch(*report: Any) -> None:
        queue.put(("batch", *report))

    result = Supervisor(config, record, witnesses=shares, plugins=tuple(plugin_names), slots=[index],
                        on_batch=on_batch).run()
    return {"stats": result.stats, "witnesses": result.witnesses, "interrupted": result.interrupted,
            "error": result.error, "checks": result.checks, "cut": result.cut,
            "scheduler": result.scheduler}


def _runtime_env() -> dict[str, Any]:
    """The driver's import path, so tasks on this machine import the same code and plugins."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys([os.getcwd(), *paths]))}}


def _reachable(address: str | None) -> None:
    """Refuse a HOST:PORT nobody listens on at once (Ray itself retries for minutes)."""
    if address is None or address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot reach a Ray cluster at {address!r}: {exc}") from None


def run(config: Any, record: Callable[[list[Outcome], Case | None], Any], *, address: str | None,
        witnesses: list[list[Any]], plugin_names: tuple[str, ...], progress: Any = None) -> Any:
    """Run the campaign's slots as Ray tasks; returns a :class:`~conform.supervisor.Result`.

    Args:
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``HOST:PORT`` joins a
            running cluster.
    """
    from conform.coverage_summary import CoverageAccumulator
    from conform.registry import select
    from conform.supervisor import Result

    ray = _ray()
    started = time.monotonic()
    _reachable(address)
    if not ray.is_initialized():
        try:
            if address is None:
                ray.init(num_cpus=max(config.workers, 1), include_dashboard=False, log_to_driver=False,
                         runtime_env=_runtime_env(), object_store_memory=100 * 2**20)
            else:
                ray.init(address=address, log_to_driver=False, runtime_env=_runtime_env())
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot reach a Ray cluster at {address!r}: {exc}") from None
    from ray.util.queue import Empty, Queue

    queue = Queue()
    remote = ray.remote(num_cpus=1, max_retries=0)(_share)
    config_json = config.to_json()
    tasks = {remote.remote(config_json, i, [e.id for e in witnesses[i]], list(plugin_names), queue): i
             for i in range(config.workers)}
    rows = select(list(config.transforms))
    coverage = CoverageAccumulator(rows) if config.coverage else None
    results: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    stop: list[int] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, lambda signum, frame: stop.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}

    def drain() -> None:
        while True:
            try:
                messages = queue.get_nowait_batch(queue.qsize()) if queue.qsize() else []
            except Empty:
                return
            if not messages:
                return
            for message in messages:
                if message[0] == "outcomes":
                    case = Case.from_json(message[1]) if message[1] is not None else None
                    record([Outcome.from_json(o) for o in message[2]], case)
                elif message[0] == "batch" and coverage is not None and message[5] is not None:
                    coverage.add(message[5], round(time.monotonic() - started, 3))

    try:
        while tasks:
            if stop:
                for ref in tasks:
                    ray.cancel(ref, force=True)
            ready, _ = ray.wait(list(tasks), num_returns=1, timeout=0.2)
            drain()
            for ref in ready:
                index = tasks.pop(ref)
                try:
                    results.append(ray.get(ref))
                except Exception as exc:  # a lost node, a dead or cancelled task
                    if not stop:
                        lost.append({"slot": index, "error": f"{type(exc).__name__}: {str(exc)[:500]}"})
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    drain()
    interrupted = signal.Signals(stop[0]).name if stop else None
    errors = [r["error"] for r in results if r.get("error")]
    error = errors[0] if errors else None
    if not results and lost and not stop:
        error = "every Ray task was lost: " + "; ".join(item["error"] for item in lost)
    stats = [s for r in results for s in r["stats"]]
    witness_status = {k: v for r in results for k, v in r["witnesses"].items()}
    result = Result(stats=stats, witnesses=witness_status, interrupted=interrupted, error=error,
                    checks=sum(r["checks"] for r in results), recorded=0,
                    cut=sum(r["cut"] for r in results), coverage=coverage,
                    scheduler=results[0]["scheduler"] if results else None, lost=lost)
    return result
