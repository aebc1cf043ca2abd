"""The ``conform`` command line: ``run``, ``fuzz``, ``replay``, ``report``, ``export``, ``merge`` and ``list``.

Exit status:
  0    nothing new
  1    new divergences, or a known entry went stale
  2    usage or bad input (an unknown transform or source, an impossible option, a malformed
       record file); reported on one line, nothing already recorded is lost
  3    the campaign could not finish (every worker lost, or a harness error, whose traceback
       is printed)
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM. The report is still written and
       marked interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from conform import cli_store
from conform.errors import ConformError, UsageError

EXIT_OK, EXIT_DIVERGENCE, EXIT_USAGE, EXIT_UNFINISHED = 0, 1, 2, 3
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


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
                   help="a registered transform, or MODULE:ATTR of a pass of your own, checked against "
                        "eager (repeatable; default: all; see `conform list transforms`)")
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
    _add_case_option(p, "check cases from this trusted function returning a generators.sources.Built "
                        "(module and example inputs; repeatable; it is imported and called)")
    p.add_argument("--stage-timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="cap every stage's time limit (default: 60 s per stage, or the transform's own)")
    _add_plugin_option(p, "load a plugin module (transforms, sources, known divergences) here and in every worker")
    p.add_argument("--database", default=".hypothesis", metavar="DIR",
                   help="hypothesis example database; earlier failures are replayed first (default .hypothesis/)")
    p.add_argument("--memory-mb", type=_positive_int, default=None, metavar="MB",
                   help="address-space limit per worker (default: an equal share of 80%% of memory)")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local worker processes (the default) or Ray tasks (pip install 'fx-conform[ray]')")
    p.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="with --backend ray: the cluster to join (default: start a local one)")
    p.add_argument("--no-coverage", action="store_true",
                   help="do not measure coverage of the transforms' modules (nor steer by it)")
    cli_store.add_campaign_options(p)


def _add_plugin_option(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=help_text)


def load_plugins(modules: Sequence[str], transforms: Sequence[str] = (), cases: Sequence[str] = ()) -> list[str]:
    """Load the named plugins, then every ``MODULE:ATTR`` transform that no plugin registers
    as a user's pass (an implicit plugin); return every name loaded, to carry to workers."""
    from conform import plugins
    from conform.registry import transforms as rows
    from conform.user_pass import is_pass_name

    plugins.load(modules, cases=cases)
    passes = [name for name in dict.fromkeys(transforms) if is_pass_name(name) and name not in rows()]
    plugins.load(passes)
    return list(dict.fromkeys([*modules, *passes]))


def _add_case_option(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--case", action="append", default=[], metavar="MODULE:FUNCTION", type=_factory_name,
                   help=help_text)


def _factory_name(text: str) -> str:
    from generators.sources import SpecError, parse_factory

    try:
        parse_factory(text)
    except SpecError:
        raise argparse.ArgumentTypeError(
            f"expected MODULE:FUNCTION naming a case factory (such as mypkg.cases:two_adds), got {text!r}"
        ) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="conform", description=__doc__.splitlines()[0],
                     epilog="\n".join(__doc__.splitlines()[2:]),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    epilog = "\n".join(__doc__.splitlines()[2:])
    run = sub.add_parser("run", help="run a conformance campaign and write the report", epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_campaign_options(run, budget_default="default 60 s unless --max-cases is given")
    fuzz = sub.add_parser("fuzz", help="like run, but with no time limit unless --budget is given",
                          epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_campaign_options(fuzz, budget_default="default: until interrupted or --max-cases")
    cli_store.add_parsers(sub)
    lst = sub.add_parser("list", help="list transforms, sources or known divergences")
    lst.add_argument("what", choices=("transforms", "sources", "known"))
    _add_plugin_option(lst, "load a plugin module (or MODULE:ATTR, a pass of your own) first, to list what it adds")
    return parser


def _campaign(args: argparse.Namespace, *, fuzz: bool) -> int:
    from conform import campaign

    loaded = load_plugins(args.plugin, args.transform, cases=args.case)
    budget = args.budget
    if budget is None and not fuzz and args.max_cases is None:
        budget = campaign.DEFAULT_BUDGET_S
    options: dict[str, dict[str, object]] = {}
    if args.include_op or args.exclude_op:
        options["random"] = {k: v for k, v in (("include", tuple(args.include_op) or None),
                                                ("exclude", tuple(args.exclude_op) or None)) if v}
    sources = tuple(args.source) or (("factory",) if args.case else ("random",))
    if args.case:
        options["factory"] = {"names": tuple(args.case)}
    config = campaign.CampaignConfig(
        transforms=tuple(args.transform),
        sources=sources,
        devices=campaign.resolve_devices(args.device),
        budget_s=budget,
        max_cases=args.max_cases,
        seed=args.seed,
        workers=args.workers,
        report_dir=args.report,
        shrink=not args.no_shrink,
        source_options=options,
        cases=tuple(dict.fromkeys(args.case)),
        stage_timeout_s=args.stage_timeout,
        database=args.database or None,
        plugins=tuple(loaded),
        memory_mb=args.memory_mb,
        coverage=not args.no_coverage,
        backend=args.backend,
        address=args.address,
        **cli_store.campaign_options(args),
    )
    config.validate()
    _validate_source_options(options)
    config, note = config.capped()
    if note:
        print(note, file=sys.stderr)
    progress = None
    if not args.quiet:
        from conform.progress import Progress

        progress = Progress(budget_s=config.budget_s, workers=config.workers, stream=sys.stderr)
        progress.start()
    summary = campaign.run(config, progress=progress)
    _print_summary(summary, Path(args.report))
    cli_store.after_campaign(args, summary)
    if summary.get("error"):
        print(f"conform: the campaign could not finish:\n{summary['error']}", file=sys.stderr)
        return EXIT_UNFINISHED
    if summary.get("interrupted"):
        return EXIT_SIGNAL.get(summary["interrupted"], 130)
    stale = any(v.get("stale") for v in summary.get("known", {}).values())
    return EXIT_DIVERGENCE if summary["new_divergences"] or stale else EXIT_OK


def _validate_source_options(options: dict[str, dict[str, object]]) -> None:
    from generators.sources import configured_source

    for name, opts in options.items():
        try:
            configured_source(name, **opts)
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(str(exc).strip("'\"")) from None


def _print_summary(summary: dict, report_dir: Path) -> None:
    if summary.get("interrupted"):
        print(f"INTERRUPTED by {summary['interrupted']}: the report holds what was checked before the stop")
    counts = summary.get("counts", {})
    print(f"{summary['cases']} cases, {summary['outcomes']} outcomes in {summary.get('duration_s', 0):.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for origin, n in sorted(summary.get("new_origins", {}).items()):
        print(f"  NEW  {origin}  x{n}")
    stale = [k for k, v in summary.get("known", {}).items() if v.get("stale")]
    for k in stale:
        print(f"  STALE known divergence {k}: {summary['known'][k].get('stale_reason', '')}")
    print(f"report: {report_dir / 'index.html'}")


def _list(args: argparse.Namespace) -> int:
    load_plugins(args.plugin)
    if args.what == "transforms":
        from conform.registry import Oracle, transforms

        for row in transforms().values():
            applies = row.oracles - {Oracle.UPSTREAM} if row.one_sided else row.oracles
            oracles = ",".join(sorted(o.value for o in applies))
            print(f"{row.name:24} {row.convention:12} [{oracles}]  {row.description}")
    elif args.what == "sources":
        from generators.sources import get_source, source_names

        for name in source_names():
            src = get_source(name)
            count = src.count()
            print(f"{name:14} {'unbounded' if count is None else count:>10}  {src.description}")
    else:
        from conform.known import entries

        if not entries():
            print("no known divergences are registered")
        for entry in entries():
            print(f"{entry.id}  [{entry.transform}, {entry.kind.value}]  {entry.reason}"
                  f"  ({entry.issue or 'unfiled'})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    from generators.sources import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "fuzz"):
            return _campaign(args, fuzz=args.command == "fuzz")
        if args.command in cli_store.HANDLERS:
            return cli_store.HANDLERS[args.command](args)
        return _list(args)
    except UsageError as exc:
        print(f"conform: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConformError as exc:
        print(f"conform: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as exc:
        # a spec handed in from elsewhere (a results file, a report) is bad input
        print(f"conform: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
