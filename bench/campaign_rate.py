"""Campaign rate, side by side in one run: the baseline campaign loop (a git revision, by
default the last one before the supervised campaign) against this checkout's, on one worker
and on two, for the same time budget.

    python bench/campaign_rate.py [--budget 120] [--baseline REV] [--seed 0] [--transform NAME]...

The baseline is exported with ``git archive`` into a temporary directory and run with its own
code on the same interpreter. For each campaign the script prints the distinct cases checked,
the distinct (case, transform, parameters) checks and repeated checks, and both per second;
then the ratios the project tracks:

* distinct cases per second, this checkout on two workers against the baseline on two;
* distinct cases per second, this checkout on two workers against one.

A baseline case is checked against every transform, a case here against the one its batch
draws for, so the table also gives checks per second, which compare the work done.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "7d89819"


def _baseline_tree(rev: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _campaign(code: Path, report: Path, *, budget: float, workers: int, seed: int, transforms: list[str],
              current: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "conform.cli", "run", "--budget", str(budget), "--workers", str(workers),
            "--seed", str(seed), "--report", str(report), "--device", "cpu"]
    for name in transforms:
        argv += ["--transform", name]
    if current:
        argv += ["--quiet", "--database", ""]
    env = dict(os.environ, PYTHONPATH=str(code))
    started = time.monotonic()
    subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    records = _records(report, current=current, code=code)
    cases = {json.dumps([r["source"], r["spec"], r["seed"]], sort_keys=True) for r in records}
    checks = {json.dumps([r["source"], r["spec"], r["seed"], r["transform"], r["params"]], sort_keys=True)
              for r in records if r["transform"] != "-"}
    keys = collections.Counter(r["key"] for r in records)
    return {"wall_s": wall, "cases": len(cases), "checks": len(checks),
            "repeats": sum(n - 1 for n in keys.values())}


def _records(report: Path, *, current: bool, code: Path) -> list[dict[str, Any]]:
    if not current:
        # the baseline writes every outcome it records, repeats included, one per line
        path = report / "results.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    sys.path.insert(0, str(code))
    from conform.store import Store

    with Store.open(report) as store:
        return [o.to_json() for o in store.outcomes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--baseline", default=BASELINE, help=f"git revision of the baseline (default {BASELINE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transform", action="append", default=[])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fx-conform-rate-") as tmp:
        tmp_path = Path(tmp)
        base = _baseline_tree(args.baseline, tmp_path / "baseline")
        rows = {}
        for label, code, workers, current in (
            (f"baseline {args.baseline}, 2 workers", base, 2, False),
            ("this checkout, 1 worker", ROOT, 1, True),
            ("this checkout, 2 workers", ROOT, 2, True),
        ):
            rows[label] = _campaign(code, tmp_path / label.replace(" ", "_").replace(",", ""), budget=args.budget,
                                    workers=workers, seed=args.seed, transforms=args.transform, current=current)
            r = rows[label]
            print(f"{label:34} {r['wall_s']:7.1f} s  cases {r['cases']:6d} ({r['cases'] / args.budget:6.2f}/s)  "
                  f"checks {r['checks']:6d} ({r['checks'] / args.budget:6.2f}/s)  repeated outcome keys {r['repeats']}",
                  flush=True)
        base_row = rows[f"baseline {args.baseline}, 2 workers"]
        one, two = rows["this checkout, 1 worker"], rows["this checkout, 2 workers"]
        ratio = lambda a, b: a / b if b else float("inf")  # noqa: E731
        print(f"distinct cases/s, this checkout (2 workers) / baseline (2 workers): "
              f"{ratio(two['cases'], base_row['cases']):.2f}x")
        print(f"checks/s, this checkout (2 workers) / baseline (2 workers): {ratio(two['checks'], base_row['checks']):.2f}x")
        print(f"distinct cases/s, 2 workers / 1 worker: {ratio(two['cases'], one['cases']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
