"""The ``conform`` command line: ``run``, ``fuzz``, ``replay``, ``report`` and ``list``.

Exit status: 0 when there is no new divergence, 1 when there is, 2 on bad usage (an unknown
transform or source, an impossible option, an unreadable results file). Bad usage is
reported on one line and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from conform.errors import ConformError, UsageError

EXIT_OK, EXIT_DIVERGENCE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"budget must be a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _workers(text: str) -> int:
    if text == "auto":
        from conform.campaign import auto_workers

        return auto_workers()
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"workers must be a positive integer or 'auto', got {text!r}") from None


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}")
    return value


def _add_campaign_options(p: argparse.ArgumentParser, *, budget_default: str) -> None:
    p.add_argument("--transform", action="append", default=[], metavar="NAME",
                   help="a registered transform (repeatable; default: all; see `conform list transforms`)")
    p.add_argument("--source", action="append", default=[], metavar="NAME",
                   help="a case source (repeatable; default: random; see `conform list sources`)")
    p.add_argument("--device", default="all", choices=("cpu", "cuda", "all"),
                   help="cpu, cuda, or all (CPU plus CUDA when present; the default)")
    p.add_argument("--budget", type=_positive_seconds, default=None, metavar="SECONDS",
                   help=f"wall-clock budget ({budget_default})")
    p.add_argument("--max-cases", type=_positive_int, default=None, metavar="N",
                   help="stop after N cases (all workers together)")
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="campaign seed (default 0)")
    p.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                   help="worker processes (default 1; auto = one per core)")
    p.add_argument("--report", default="reports", metavar="DIR", help="report directory (default reports/)")
    p.add_argument("--no-shrink", action="store_true", help="record new divergences without shrinking them")
    p.add_argument("--include-op", action="append", default=[], metavar="KIND",
                   help="random source: draw only these op kinds (repeatable)")
    p.add_argument("--exclude-op", action="append", default=[], metavar="KIND",
                   help="random source: never draw these op kinds (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="conform", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a conformance campaign and write the report")
    _add_campaign_options(run, budget_default="default 60 s unless --max-cases is given")
    fuzz = sub.add_parser("fuzz", help="like run, but with no time limit unless --budget is given")
    _add_campaign_options(fuzz, budget_default="default: until interrupted or --max-cases")
    replay = sub.add_parser("replay", help="re-run one recorded outcome and print what it gives now")
    replay.add_argument("key", help="an outcome key (or a unique prefix) from results.jsonl")
    replay.add_argument("--report", default="reports", metavar="DIR")
    rep = sub.add_parser("report", help="merge recorded parts and render the HTML report again")
    rep.add_argument("--report", default="reports", metavar="DIR")
    lst = sub.add_parser("list", help="list transforms, sources or known divergences")
    lst.add_argument("what", choices=("transforms", "sources", "known"))
    return parser


def _campaign(args: argparse.Namespace, *, fuzz: bool) -> int:
    from conform import campaign

    budget = args.budget
    if budget is None and not fuzz and args.max_cases is None:
        budget = campaign.DEFAULT_BUDGET_S
    options = {}
    if args.include_op or args.exclude_op:
        options["random"] = {k: v for k, v in (("include", tuple(args.include_op) or None),
                                                ("exclude", tuple(args.exclude_op) or None)) if v}
    config = campaign.CampaignConfig(
        transforms=tuple(args.transform),
        sources=tuple(args.source) or ("random",),
        devices=campaign.resolve_devices(args.device),
        budget_s=budget,
        max_cases=args.max_cases,
        seed=args.seed,
        workers=args.workers,
        report_dir=args.report,
        shrink=not args.no_shrink,
        source_options=options,
    )
    config.validate()
    _validate_source_options(options)
    summary = campaign.run(config)
    _print_summary(summary, Path(args.report))
    return EXIT_DIVERGENCE if summary["new_divergences"] else EXIT_OK


def _validate_source_options(options: dict[str, dict[str, object]]) -> None:
    from generators.sources import configured_source

    for name, opts in options.items():
        try:
            configured_source(name, **opts)
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(str(exc).strip("'\"")) from None


def _print_summary(summary: dict, report_dir: Path) -> None:
    counts = summary.get("counts", {})
    print(f"{summary['cases']} cases, {summary['outcomes']} outcomes in {summary.get('duration_s', 0):.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for origin, n in sorted(summary.get("new_origins", {}).items()):
        print(f"  NEW  {origin}  x{n}")
    stale = [k for k, v in summary.get("known", {}).items() if v.get("stale")]
    for k in stale:
        print(f"  STALE known divergence {k}: {summary['known'][k].get('stale_reason', '')}")
    print(f"report: {report_dir / 'index.html'}")


def _replay(args: argparse.Namespace) -> int:
    from conform.case import Case
    from conform.engine import check
    from conform.record import read_results

    outcomes = read_results(Path(args.report))
    matches = [o for o in outcomes if o.key.startswith(args.key)]
    keys = {o.key for o in matches}
    if not matches:
        raise UsageError(f"no recorded outcome has key {args.key!r} in {args.report}; "
                         "keys are listed in results.jsonl and the report")
    if len(keys) > 1:
        raise UsageError(f"key prefix {args.key!r} is ambiguous", choices=sorted(keys)[:10])
    recorded = matches[0]
    case = Case(source=recorded.source, spec=recorded.spec, seed=recorded.seed)
    if recorded.transform == "-":
        from conform.engine import prepare
        from conform.outcome import Outcome

        result = prepare(case)
        print(result.describe() if isinstance(result, Outcome) else f"{case.id}: builds and traces")
        return EXIT_OK
    devices = ("cpu", "cuda") if recorded.device == "cuda" else ("cpu",)
    print(f"recorded: {recorded.verdict.value} {recorded.origin}")
    now = check(case, recorded.transform, params=recorded.params, devices=devices)
    for o in now:
        print(o.describe())
    return EXIT_DIVERGENCE if any(o.verdict.value == "fail" for o in now) else EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from conform import campaign, record

    report_dir = Path(args.report)
    if not (report_dir / record.PARTS).is_dir():
        raise UsageError(f"no recorded parts in {report_dir}/{record.PARTS}; run `conform run --report {report_dir}`")
    previous = {}
    summary_path = report_dir / record.SUMMARY
    if summary_path.exists():
        try:
            previous = json.loads(summary_path.read_text())
        except ValueError:
            previous = {}
    keep = ("duration_s", "seed", "budget_s", "max_cases", "workers", "transforms", "sources", "environment")
    meta = {k: previous[k] for k in keep if k in previous}
    witnesses = {k: {"stale": v["stale"], **({"stale_reason": v["stale_reason"]} if "stale_reason" in v else {})}
                 for k, v in previous.get("known", {}).items() if v.get("stale") is not None}
    summary = campaign.finish(report_dir, meta=meta, witnesses=witnesses)
    _print_summary(summary, report_dir)
    return EXIT_DIVERGENCE if summary["new_divergences"] else EXIT_OK


def _list(args: argparse.Namespace) -> int:
    if args.what == "transforms":
        from conform.registry import TRANSFORMS

        for row in TRANSFORMS:
            oracles = ",".join(sorted(o.value for o in row.oracles))
            print(f"{row.name:24} {row.convention:12} [{oracles}]  {row.description}")
    elif args.what == "sources":
        from generators.sources import get_source, source_names

        for name in source_names():
            src = get_source(name)
            count = src.count()
            print(f"{name:14} {'unbounded' if count is None else count:>10}  {src.description}")
    else:
        from conform.known import KNOWN

        if not KNOWN:
            print("no known divergences are registered")
        for entry in KNOWN:
            print(f"{entry.id}  [{entry.transform}, {entry.kind.value}]  {entry.reason}"
                  f"  ({entry.issue or 'unfiled'})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "fuzz"):
            return _campaign(args, fuzz=args.command == "fuzz")
        if args.command == "replay":
            return _replay(args)
        if args.command == "report":
            return _report(args)
        return _list(args)
    except UsageError as exc:
        print(f"conform: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConformError as exc:
        print(f"conform: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
