"""Cost of the engine's oracles: ``conform.engine.check`` cases/s on the same drawn cases.

    python bench/metamorphic_cost.py [--cases 100] [--transform NAME]...

Draws ``--cases`` random-source cases (hypothesis, derandomized, so every run checks the
same cases) and parameters for each row, then times ``check`` on each (case, row), building
the case afresh as a campaign does. Run it on two checkouts (``PYTHONPATH``) to compare, or
with ``--interleave`` to time each check with and without the metamorphic oracles back to back
in one process (robust against a machine whose load changes between two runs).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.engine import Prepared, check, prepare
from conform.registry import get
from generators.sources import get_source


def draw(n: int, rows: list[str], seed: int) -> list[tuple[Case, str, dict[str, Any]]]:
    """``n`` (case, row, params) triples per row, the same on every run."""
    drawn: dict[tuple[str, str], tuple[Case, str, dict[str, Any]]] = {}
    source = get_source("random")

    @settings(max_examples=n * 2, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        case = Case("random", data.draw(source.specs()), seed)
        prepared = prepare(case)
        if not isinstance(prepared, Prepared):
            return
        for name in rows:
            strategy = get(name).load_params()
            params = data.draw(strategy(prepared.graph_module)) if strategy else {}
            drawn.setdefault((case.key, name), (case, name, params))

    collect()
    keys = list(dict.fromkeys(key for key, _ in drawn))[:n]
    return [drawn[key, name] for key in keys for name in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transform", action="append", default=None)
    parser.add_argument("--interleave", action="store_true")
    args = parser.parse_args(argv)
    rows = args.transform or ["normalize_args", "fuse", "merge_matmul"]
    triples = draw(args.cases, rows, args.seed)
    if args.interleave:
        return interleaved(triples, rows)
    for name in rows:
        mine = [(c, p) for c, n, p in triples if n == name]
        started = time.perf_counter()
        verdicts: dict[str, int] = {}
        for case, params in mine:
            for outcome in check(case, name, params=params):
                verdicts[outcome.verdict.value] = verdicts.get(outcome.verdict.value, 0) + 1
        seconds = time.perf_counter() - started
        print(f"{name:16} {len(mine):4d} cases {seconds:7.2f} s {len(mine) / seconds:7.1f} cases/s {verdicts}")
    return 0


def interleaved(triples: list[tuple[Case, str, dict[str, Any]]], rows: list[str]) -> int:
    from conform import engine

    judge = engine.metamorphic.judge
    seconds = {name: [0.0, 0.0] for name in rows}
    try:
        for case, name, params in triples:
            for i, oracles in enumerate((judge, lambda f, sides: [])):
                engine.metamorphic.judge = oracles
                started = time.perf_counter()
                check(case, name, params=params)
                seconds[name][i] += time.perf_counter() - started
    finally:
        engine.metamorphic.judge = judge
    for name, (with_, without) in seconds.items():
        n = sum(1 for _, row, _ in triples if row == name)
        print(f"{name:16} with {n / with_:6.1f} cases/s  without {n / without:6.1f} cases/s  "
              f"ratio {without / with_:.2f}")
    print(f"all rows: ratio {sum(v[1] for v in seconds.values()) / sum(v[0] for v in seconds.values()):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
