"""Harness throughput: campaign cases/s on one worker and on every core, against the bare
pipeline (build, trace, transform with both implementations, execute, compare with
``torch.testing.assert_close``; no outcomes, no recording, no hypothesis) on the same cases.

    python bench/throughput.py [--budget 60] [--source random] [--seed 0] [--transform NAME]...

Both campaigns run for the same time budget, as ``conform run`` does (a case-count limit
would split the cases evenly between workers, and case costs vary by orders of magnitude);
the bare pipeline then replays the cases the one-worker campaign checked.

Prints one table; the last column is the harness overhead ratio (harness seconds / bare
seconds for the same cases). A campaign also has costs that do not grow with its length: the
replay of the known divergences' witnesses (stale detection) and writing the report; the
last line gives them and the ratio without them. Target: <= 1.3x.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from conform import campaign
from conform.adapters import Subject
from conform.case import Case
from conform.engine import trace
from conform.execute import seed_everything, time_limit
from conform.registry import select
from conform.store import Store


def _bare(records: list[dict[str, Any]]) -> float:
    """Seconds for the bare pipeline over the recorded (case, transform, params) triples."""
    by_case: dict[str, tuple[Case, list[tuple[str, dict[str, Any]]]]] = {}
    for rec in records:
        case = Case(rec["source"], rec["spec"], rec["seed"])
        by_case.setdefault(case.key, (case, []))[1].append((rec["transform"], rec["params"]))
    rows = {row.name: row for row in select([])}
    started = time.perf_counter()
    for case, checks in by_case.values():
        try:
            built = case.build()
            seed_everything(case.seed)
            with torch.no_grad():  # the engine runs modules without autograd too
                expected = built.module(*built.args, **built.kwargs)
            gm = trace(built, seed=case.seed)
        except Exception:
            continue
        for name, params in checks:
            row = rows.get(name)
            if row is None:
                continue
            results = []
            for impl in ("reference", "upstream"):
                subject = Subject(built.module, gm, built.args, built.kwargs).clone()
                try:
                    # the same per-transform time limit as the engine's, so a case the harness
                    # gives up on costs the bare pipeline no more than it costs the harness
                    with time_limit(row.timeout_s):
                        applied = row.load(impl)(subject, dict(params))
                    if applied.runnable is not None:
                        seed_everything(case.seed)
                        with time_limit(row.timeout_s), torch.no_grad():
                            results.append(applied.runnable(*subject.inputs, **subject.kwargs))
                except Exception:
                    results.append(None)
            for out in results:
                if out is not None and not built.stochastic:
                    try:
                        torch.testing.assert_close(out, expected, equal_nan=True)
                    except Exception:
                        pass
    return time.perf_counter() - started


def _campaign(report: Path, *, workers: int, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    config = campaign.CampaignConfig(
        transforms=tuple(args.transform), sources=(args.source,), devices=("cpu",), budget_s=args.budget,
        max_cases=None, seed=args.seed, workers=workers, report_dir=str(report), shrink=False,
    )
    started = time.perf_counter()
    summary = campaign.run(config)
    return time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per campaign")
    parser.add_argument("--source", default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transform", action="append", default=[])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one = _campaign(Path(tmp) / "one", workers=1, args=args)
        with Store.open(Path(tmp) / "one", create=False) as store:
            records = [o.to_json() for o in store.outcomes()]
        bare_s = _bare(records)
        all_s, every = _campaign(Path(tmp) / "all", workers=cores, args=args)
    executed = sum(w["cases"] for w in one["worker_stats"])
    executed_all = sum(w["cases"] for w in every["worker_stats"])
    print(f"{args.budget:g} s campaigns on {args.source} cases, {len(one['transforms'])} transforms, {one['outcomes']} outcomes, "
          f"torch {torch.__version__}, {cores} cores")
    print(f"{'pipeline':34} {'cases':>6} {'seconds':>9} {'cases/s':>9} {'s/case vs bare':>15}")
    bare_rate = bare_s / executed
    for label, n, secs in (("bare (no harness)", executed, bare_s), ("conform run, 1 worker", executed, one_s),
                           (f"conform run, {cores} workers", executed_all, all_s)):
        print(f"{label:34} {n:6d} {secs:9.2f} {n / secs:9.2f} {secs / n / bare_rate:15.2f}")
    worker = one["worker_stats"][0]
    fixed = worker["witness_seconds"] + (one_s - worker["seconds"])
    speedup = (executed_all / all_s) / (executed / one_s)
    print(f"harness overhead (1 worker / bare): {one_s / bare_s:.2f}x; parallel speed-up (cases/s): {speedup:.2f}x")
    print(f"fixed per campaign: {worker['witness_seconds']:.2f} s witness replay, {one_s - worker['seconds']:.2f} s "
          f"start and report; per-case overhead without them: {(one_s - fixed) / bare_s:.2f}x")


if __name__ == "__main__":
    main()
