"""Coverage reached by the known divergences' witnesses alone: a baseline for campaigns.

    python bench/witness_coverage.py [--transform NAME]... [--json out.json]

Replays the witness of every ``conform/known/`` entry of the chosen transforms with
``conform.engine.check`` under a :class:`CoverageProbe` (transform scope, as in a
campaign, every call traced) and prints, per transform, the share of measurable upstream and reference lines
and branches reached (``conform.coverage_map``), then per upstream module the share of the
union of its measurable lines over the chosen rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conform import known  # noqa: E402
from conform.coverage_map import measurable  # noqa: E402
from conform.coverage_probe import CoverageProbe  # noqa: E402
from conform.coverage_summary import CoverageAccumulator  # noqa: E402
from conform.engine import check  # noqa: E402
from conform.execute import quiet  # noqa: E402
from conform.registry import select  # noqa: E402

DEFAULT_TRANSFORMS = ["split_module", "partition", "normalize_args", "normalize_operators", "fuse",
                      "remove_dropout", "optimize_for_inference", "merge_matmul"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transform", action="append", default=[])
    parser.add_argument("--json", type=Path, help="also write the report-shaped coverage here")
    args = parser.parse_args()
    rows = select(args.transform or DEFAULT_TRANSFORMS)
    names = {row.name for row in rows}
    entries = [e for e in known.KNOWN if e.transform in names]
    accumulator = CoverageAccumulator(rows)
    witnesses: dict[str, int] = dict.fromkeys(names, 0)
    started = time.perf_counter()
    with CoverageProbe(rows, sample=1.0) as probe:
        for entry in entries:
            try:
                witness = known.load_witness(entry)
                with quiet():
                    check(witness.case, entry.transform, params=witness.params)
                witnesses[entry.transform] += 1
            except Exception as exc:  # a witness that cannot run reaches nothing
                print(f"witness of {entry.id} cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
        accumulator.add(probe.snapshot(), time.perf_counter() - started)
    summary = accumulator.summary()
    print(f"{len(entries)} witnesses replayed in {time.perf_counter() - started:.1f} s")
    print(f"{'transform':24} {'witnesses':>9} {'upstream lines':>15} {'branches':>9} {'reference lines':>16} {'branches':>9}")
    for row in rows:
        s = summary[row.name]
        up = sum(len(m.lines) for m in measurable(row)["upstream"])
        ref = sum(len(m.lines) for m in measurable(row)["reference"])
        print(f"{row.name:24} {witnesses[row.name]:9d} {s['upstream']:8.1f}% /{up:4d} {s['upstream_branches']:8.1f}% "
              f"{s['reference']:9.1f}% /{ref:4d} {s['reference_branches']:8.1f}%")
    # per upstream module: the union of the measurable lines of every chosen row using it
    union: dict[str, set[int]] = {}
    for row in rows:
        for m in measurable(row)["upstream"]:
            union.setdefault(m.module, set()).update(m.lines)
    print(f"\n{'upstream module':48} {'measurable':>10} {'reached':>8} {'share':>7}")
    for module, lines in union.items():
        reached = accumulator.lines.get(module, set()) & lines
        print(f"{module:48} {len(lines):10d} {len(reached):8d} {100 * len(reached) / len(lines):6.1f}%")
    if args.json:
        args.json.write_text(json.dumps(accumulator.report(), indent=1))


if __name__ == "__main__":
    main()
