"""Reach: which registered known divergences random cases of a transform run into, in a
fixed time budget per transform, with the row's focus (``after``) or with the general
vocabulary alone (``--general``, how campaigns drew before directed generation).

    python bench/reach.py [--seconds 30] [--seed 0] [--general] [--transform NAME]... [--json FILE]

Cases come from :func:`conform.strategies.cases` under ``hypothesis.given`` (generation
only, no shrinking) and each is checked with :func:`conform.engine.check`. Prints, per
transform, the known entries reached out of those registered, the cases checked, the new
(unregistered) divergences by origin, and the ids reached.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from conform import known
from conform.engine import check
from conform.outcome import Verdict
from conform.registry import TransformSpec, select
from conform.strategies import cases, prepared_for


class _Spent(Exception):
    """The transform's time budget is spent."""


def _warm_up(row: TransformSpec) -> None:
    """Check one witness of the row untimed: the first check imports and compiles what the
    transform needs, which would otherwise count against the first transform's budget."""
    for entry in known.KNOWN:
        if entry.transform == row.name:
            witness = known.load_witness(entry)
            check(witness.case, row, params=witness.params)
            return


def reach(row: TransformSpec, seconds: float, seed: int = 0) -> dict[str, Any]:
    """Check random cases of ``row`` for ``seconds``; count known ids and new origins."""
    _warm_up(row)
    reached: collections.Counter[str] = collections.Counter()
    fresh: dict[str, dict[str, Any]] = {}
    counts = {"cases": 0, "verdicts": collections.Counter()}
    deadline = time.monotonic() + seconds

    @settings(max_examples=10**9, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck), verbosity=settings.default.verbosity.quiet,
              report_multiple_bugs=False, print_blob=False)
    @hypothesis_seed(seed)
    @given(cases(row))
    def body(drawn: Any) -> None:
        if time.monotonic() > deadline:
            raise _Spent
        case, params = drawn
        counts["cases"] += 1
        for outcome in check(case, row, params=params, prepared=prepared_for(case)):
            counts["verdicts"][outcome.verdict.value] += 1
            if outcome.known_id:
                reached[outcome.known_id] += 1
            elif outcome.verdict is Verdict.FAIL and outcome.origin not in fresh:
                fresh[outcome.origin] = {"message": outcome.message[:300], "spec": case.spec, "seed": case.seed,
                                         "params": params}

    try:
        body()
    except _Spent:
        pass
    registered = [e.id for e in known.KNOWN if e.transform == row.name]
    return {"transform": row.name, "registered": registered, "reached": dict(reached),
            "cases": counts["cases"], "verdicts": dict(counts["verdicts"]), "new": fresh}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--general", action="store_true", help="ignore the rows' focus (the general vocabulary)")
    parser.add_argument("--transform", action="append", default=[])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rows = select(args.transform) if args.transform else [r for r in select(None) if r.focus]
    results = []
    for row in rows:
        if args.general:
            row = dataclasses.replace(row, focus=None)
        result = reach(row, args.seconds, args.seed)
        results.append(result)
        ids = sorted(set(result["reached"]) & set(result["registered"]))
        print(f"{row.name:24s} {len(ids):2d}/{len(result['registered']):2d} known  {result['cases']:5d} cases  "
              f"{len(result['new'])} new  {', '.join(ids)}", flush=True)
        for origin, info in result["new"].items():
            print(f"    new: {origin}: {info['message'][:160]!r}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
