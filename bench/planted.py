"""How fast a campaign finds each planted bug of ``tests/selfcheck/plants``.

Runs every plant's campaign (the ``conform run`` command the self-check tests run) one after
the other and prints, per plant, the transform, the seconds from the campaign's start to the
first new divergence that blames the reference (``notes["t"]`` of that outcome), the cases
run and the wall time. With ``--control`` it also runs each transform unplanted.

    PYTHONPATH=$PWD python bench/planted.py [--plant NAME]... [--max-cases N] [--budget S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests" / "selfcheck")]

import plants  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", action="append", default=[], choices=sorted(plants.PLANTS),
                        help="run only these plants (repeatable; default: all)")
    parser.add_argument("--max-cases", type=int, default=None,
                        help=f"cases per campaign (default: the plant's own bound, else {plants.MAX_CASES})")
    parser.add_argument("--budget", type=float, default=plants.BUDGET_S, help="seconds per campaign")
    parser.add_argument("--control", action="store_true", help="also run each transform unplanted")
    args = parser.parse_args(argv)
    chosen = [plants.PLANTS[n] for n in args.plant] or list(plants.PLANTS.values())
    max_cases = args.max_cases
    print(f"{'plant':26} {'module':24} {'transform':20} {'first (s)':>9} {'found':>5} {'cases':>5} {'wall (s)':>8}")
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, plants.Plant | None, str]] = [(p.name, p, p.transform) for p in chosen]
        if args.control:
            runs += [(f"(control) {t}", None, t) for t in dict.fromkeys(p.transform for p in chosen)]
        for label, plant, transform in runs:
            report = Path(tmp) / label.replace(" ", "_").replace("(", "").replace(")", "")
            start = time.monotonic()
            options = plants.control_options(transform) if plant is None else ()
            code = plants.run(plant, report, transform=transform, max_cases=max_cases, budget_s=args.budget,
                              options=options)
            wall = time.monotonic() - start
            found = [o for o in plants.findings(report) if plants.blames_reference(o)]
            first = f"{found[0].notes['t']:.1f}" if found and "t" in found[0].notes else "-"
            cases = _cases(report)
            module = plant.module if plant else "-"
            print(f"{label:26} {module:24} {transform:20} {first:>9} {len(found):5} {cases:5} {wall:8.1f}"
                  + ("" if (bool(found) == (plant is not None)) and code == int(plant is not None) else "  <-- unexpected"),
                  flush=True)
            missed += (bool(found) != (plant is not None))
    return 1 if missed else 0


def _cases(report: Path) -> int:
    from conform.store import Store

    with Store.open(report, create=False) as store:
        runs = store.runs()
    return int(runs[-1]["counts"]["cases"]) if runs else 0


if __name__ == "__main__":
    raise SystemExit(main())
