"""Coverage probe overhead: engine cases/s with and without :class:`CoverageProbe` running.

    python bench/coverage_overhead.py [--cases 150] [--seed 0] [--batch 10] [--rounds 2] [--transform NAME]...
                                      [--scope transform|process]... [--sample RATE]...

Draws ``--cases`` random-source cases once (fixed seed), each with its transform's
parameters; transforms take turns by batches of ``--batch`` cases, as a worker runs one
transform per batch. Every case is first checked once untimed (imports, caches), then the
same list is checked ``--rounds`` times without the probe and with it in each ``--scope``
and ``--sample`` rate, in turn so that drifting machine load affects all alike; the probe measures the files of all the listed rows and takes a snapshot
after every batch, as a worker does. Prints the best round of each, its ratio to the plain
engine's seconds, and the lines each probe reached (all lines of the files, module level
included).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conform.case import Case  # noqa: E402
from conform.coverage_probe import CoverageProbe  # noqa: E402
from conform.engine import Prepared, check, prepare  # noqa: E402
from conform.execute import quiet  # noqa: E402
from conform.registry import TransformSpec, select  # noqa: E402
from generators.sources import get_source  # noqa: E402

DEFAULT_TRANSFORMS = ["split_module", "partition", "normalize_args", "normalize_operators", "fuse",
                      "remove_dropout", "optimize_for_inference", "merge_matmul"]

Check = tuple[Case, TransformSpec, dict[str, Any]]


def draw(n: int, rows: list[TransformSpec], *, seed: int, batch: int) -> list[Check]:
    """``n`` distinct cases that build and trace, the i-th checked with the row of its batch.

    The body draws the same things for the same choices whatever it has collected (hypothesis
    checks that a choice sequence replays alike), so it draws parameters for every row and
    keeps drawing once it has enough; ``2 n`` examples leave room for cases that fail to
    build or trace.
    """
    checks: list[Check] = []
    seen: set[str] = set()
    source = get_source("random")

    @settings(max_examples=2 * n, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)
    @hypothesis_seed(seed)
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        case = Case("random", data.draw(source.specs()), data.draw(st.integers(0, 2**31 - 1)))
        prepared = prepare(case)
        if not isinstance(prepared, Prepared):
            return
        drawn = {}
        for row in rows:
            factory = row.load_params()
            drawn[row.name] = data.draw(factory(prepared.graph_module)) if factory else {}
        if case.key not in seen and len(checks) < n:
            seen.add(case.key)
            row = rows[(len(checks) // batch) % len(rows)]
            checks.append((case, row, drawn[row.name]))

    collect()
    return checks


def run(checks: list[Check], *, probe: CoverageProbe | None, batch: int) -> float:
    """Seconds to check every case (snapshot after every batch when probing)."""
    gc.collect()
    started = time.perf_counter()
    if probe is not None:
        probe.start()
    for i, (case, row, params) in enumerate(checks, 1):
        with quiet():
            check(case, row, params=params)
        if probe is not None and i % batch == 0:
            probe.snapshot()
    if probe is not None:
        probe.snapshot()
        probe.stop()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=10, help="cases per batch (a snapshot after each)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--transform", action="append", default=[])
    parser.add_argument("--scope", action="append", choices=["transform", "process"],
                        help="probe scopes to time (default: transform)")
    parser.add_argument("--sample", action="append", type=float,
                        help="probe sample rates to time (default: 1 and 0.5)")
    args = parser.parse_args()
    args.scope = args.scope or ["transform"]
    args.sample = args.sample or [1.0, 0.5]
    rows = select(args.transform or DEFAULT_TRANSFORMS)
    import torch

    torch.set_num_threads(1)  # one worker per core, as in a campaign
    started = time.perf_counter()
    checks = draw(args.cases, rows, seed=args.seed, batch=args.batch)
    drawn_s = time.perf_counter() - started
    run(checks, probe=None, batch=args.batch)  # warm: imports, lazy caches, first traces
    configs: dict[str, dict[str, Any] | None] = {"engine": None}
    for scope in args.scope:
        for sample in args.sample:
            configs[f"+ probe ({scope}, sample {sample:g})"] = {"scope": scope, "sample": sample}
    modes: dict[str, list[float]] = {label: [] for label in configs}
    reached: dict[str, int] = {}
    last: CoverageProbe | None = None
    for _ in range(args.rounds):
        for label, options in configs.items():
            probe = CoverageProbe(rows, **options) if options is not None else None
            modes[label].append(run(checks, probe=probe, batch=args.batch))
            if probe is not None:
                reached[label] = sum(len(e["lines"]) for e in probe.snapshot().values())
                last = probe
    # the cost of one snapshot with everything the cases reach
    snap_started = time.perf_counter()
    for _ in range(10):
        assert last is not None
        last.snapshot()
    snapshot_s = (time.perf_counter() - snap_started) / 10
    n = len(checks)
    base = min(modes["engine"])
    print(f"{n} random cases (seed {args.seed}, drawn in {drawn_s:.1f} s), {len(rows)} transforms by batches of "
          f"{args.batch}: {', '.join(r.name for r in rows)}; torch {torch.__version__}, 1 thread")
    print(f"{'':34} {'seconds':>8} {'cases/s':>8} {'ratio':>6}  {'lines reached':>13}  rounds")
    for label, seconds in modes.items():
        best = min(seconds)
        print(f"{label:34} {best:8.2f} {n / best:8.2f} {best / base:6.3f}  {reached.get(label, 0) or '':>13}  "
              f"{', '.join(f'{s:.2f}' for s in seconds)}")
    print(f"ratio: best round with the probe / best round without; one snapshot: {1000 * snapshot_s:.1f} ms")


if __name__ == "__main__":
    main()
