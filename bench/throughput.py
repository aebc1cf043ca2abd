"""Harness throughput: campaign cases/s on one worker and on every core, against the bare
pipeline (build, trace, transform with both implementations, execute, compare with
``torch.testing.assert_close``; no outcomes, no recording, no hypothesis) on the same cases.

    python bench/throughput.py [--cases 60] [--source random] [--seed 0] [--transform NAME]...

Prints one table; the last column of the first two rows is the harness overhead ratio
(harness seconds per case / bare seconds per case). Target: <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
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
from conform.execute import seed_everything
from conform.registry import select


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
                    applied = row.load(impl)(subject, dict(params))
                    if applied.runnable is not None:
                        seed_everything(case.seed)
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


def _campaign(report: Path, *, cases: int, workers: int, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    config = campaign.CampaignConfig(
        transforms=tuple(args.transform), sources=(args.source,), devices=("cpu",), budget_s=None,
        max_cases=cases, seed=args.seed, workers=workers, report_dir=str(report), shrink=False,
    )
    started = time.perf_counter()
    summary = campaign.run(config)
    return time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--source", default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transform", action="append", default=[])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one = _campaign(Path(tmp) / "one", cases=args.cases, workers=1, args=args)
        records = [json.loads(line) for line in (Path(tmp) / "one" / "results.jsonl").open()]
        bare_s = _bare(records)
        all_s, every = _campaign(Path(tmp) / "all", cases=args.cases, workers=cores, args=args)
    executed = sum(w["cases"] for w in one["worker_stats"])
    executed_all = sum(w["cases"] for w in every["worker_stats"])
    print(f"{args.cases} {args.source} cases, {len(one['transforms'])} transforms, {one['outcomes']} outcomes, "
          f"torch {torch.__version__}, {cores} cores")
    print(f"{'pipeline':34} {'seconds':>9} {'cases/s':>9} {'vs bare':>9}")
    print(f"{'bare (no harness)':34} {bare_s:9.2f} {executed / bare_s:9.2f} {1.0:9.2f}")
    print(f"{'conform run, 1 worker':34} {one_s:9.2f} {executed / one_s:9.2f} {one_s / bare_s:9.2f}")
    print(f"{f'conform run, {cores} workers':34} {all_s:9.2f} {executed_all / all_s:9.2f} {all_s / bare_s:9.2f}")
    print(f"harness overhead (1 worker / bare): {one_s / bare_s:.2f}x; parallel speed-up: {one_s / all_s:.2f}x")


if __name__ == "__main__":
    main()
