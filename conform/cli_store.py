"""The record-store side of the command line: ``replay``, ``report``, ``export``, ``merge``,
and the ``--shard``, ``--force`` and ``--junit`` options of ``run`` and ``fuzz``.

``conform.cli`` registers these parsers and dispatches to :data:`HANDLERS`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conform.errors import UsageError

EXIT_OK, EXIT_DIVERGENCE = 0, 1


def _shard(text: str) -> tuple[int, int]:
    from conform.shards import parse_shard

    try:
        shard = parse_shard(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return (shard.index, shard.count)


def _run_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"run must be a positive run id (see the report's history), got {text!r}")
    return value


def add_campaign_options(p: argparse.ArgumentParser) -> None:
    """``--shard``, ``--force`` and ``--junit`` for ``run`` and ``fuzz``."""
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="check only shard I of N of the case space (1-based; combine with `conform merge`)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty report directory that fx-conform did not create")
    p.add_argument("--junit", default=None, metavar="FILE",
                   help="also write JUnit XML (one test case per outcome origin) to FILE")


def campaign_options(args: argparse.Namespace) -> dict[str, Any]:
    """The CampaignConfig fields these options set."""
    return {"shard": args.shard, "force": args.force}


def after_campaign(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """Write the JUnit file of a finished campaign, when ``--junit`` asked for one."""
    if args.junit:
        _write_junit(Path(args.junit), Path(args.report), summary)


def _write_junit(path: Path, report_dir: Path, summary: dict[str, Any]) -> None:
    from conform import record
    from conform.junit import write_junit
    from conform.store import Store

    outcomes = []
    with Store.open(report_dir) as store:
        for run_id in summary.get("run_ids", []):
            outcomes.extend(store.outcomes(run_id))
    write_junit(path, outcomes, summary, report_dir=report_dir)
    if path.resolve().parent == report_dir.resolve() or report_dir.resolve() in path.resolve().parents:
        record.add_generated(report_dir, [path.resolve()])
    print(f"junit: {path}")


def add_parsers(sub: Any) -> None:
    replay = sub.add_parser("replay", help="re-run one recorded outcome and print what it gives now")
    replay.add_argument("key", help="an outcome key (or a unique prefix) from the report or `conform export`")
    replay.add_argument("--report", default="reports", metavar="DIR")
    from conform.cli import _add_case_option, _add_plugin_option

    _add_case_option(replay, "trust this case factory: a recorded factory case is rebuilt only from a "
                             "trusted function (repeatable)")
    _add_plugin_option(replay, "load a plugin module first: an outcome of a row a plugin adds replays only "
                               "with the plugin loaded (repeatable)")
    replay.add_argument("--transform", action="append", default=[], metavar="MODULE:ATTR",
                        help="the pass of your own the outcome was recorded for: a record's pass is "
                             "imported only when named here (repeatable)")
    replay.add_argument("--repro", default=None, metavar="FILE",
                        help="also write the outcome's standalone repro script to FILE (the campaign writes "
                             "one for the first examples of each origin only)")
    rep = sub.add_parser("report", help="render the HTML report again from the record store")
    rep.add_argument("--report", default="reports", metavar="DIR")
    rep.add_argument("--from", dest="from_file", default=None, metavar="FILE",
                     help="first import the outcomes of a JSONL file (adds to the store, never removes)")
    rep.add_argument("--run", type=_run_id, default=None, metavar="N", help="the run to report (default: the latest)")
    rep.add_argument("--junit", default=None, metavar="FILE", help="also write JUnit XML to FILE")
    exp = sub.add_parser("export", help="write recorded outcomes as JSONL (one outcome per line, spec included)")
    exp.add_argument("--jsonl", required=True, metavar="FILE", help="the file to write")
    exp.add_argument("--report", default="reports", metavar="DIR")
    exp.add_argument("--run", type=_run_id, default=None, metavar="N", help="only this run (default: every run)")
    merge = sub.add_parser("merge", help="merge the record stores of several report directories (e.g. shards)")
    merge.add_argument("dirs", nargs="+", metavar="DIR", help="report directories to merge")
    merge.add_argument("--into", required=True, metavar="DIR", help="the report directory to merge into")
    merge.add_argument("--force", action="store_true",
                       help="merge into a non-empty directory that fx-conform did not create")
    merge.add_argument("--junit", default=None, metavar="FILE", help="also write JUnit XML to FILE")


def _exit_status(summary: dict[str, Any]) -> int:
    return EXIT_DIVERGENCE if summary["new_divergences"] else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from conform.case import Case
    from conform.engine import check
    from conform.record import read_results

    outcomes = read_results(Path(args.report))
    matches = [o for o in outcomes if o.key.startswith(args.key)]
    keys = {o.key for o in matches}
    if not matches:
        raise UsageError(f"no recorded outcome has key {args.key!r} in {args.report}; "
                         f"keys are listed in the report and by `conform export --report {args.report}`")
    if len(keys) > 1:
        raise UsageError(f"key prefix {args.key!r} is ambiguous", choices=sorted(keys)[:10])
    recorded = matches[0]
    from conform.cli import load_plugins

    load_plugins(args.plugin, args.transform)
    _check_recorded_transform(recorded.transform, recorded.key, Path(args.report))
    _check_recorded_case(recorded.source, recorded.spec, recorded.seed, recorded.params, args.case, recorded.key)
    case = Case(source=recorded.source, spec=recorded.spec, seed=recorded.seed)
    if args.repro:
        _write_repro_script(recorded, case, Path(args.repro))
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


def _write_repro_script(recorded: Any, case: Any, path: Path) -> None:
    from conform import repro

    try:
        path.write_text(repro.render(recorded, case), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the repro script {path}: {exc.strerror or exc}; "
                         "name a file in a writable directory") from None
    print(f"repro: {path}")


def _check_recorded_transform(transform: object, key: str, report: Path) -> None:
    """Refuse an outcome whose transform this process has not loaded: a record never makes
    replay import a pass or a plugin; the person names it again."""
    from conform.registry import transforms
    from conform.user_pass import is_pass_name

    if transform == "-" or (isinstance(transform, str) and transform in transforms()):
        return
    if isinstance(transform, str) and is_pass_name(transform):
        raise UsageError(f"outcome {key} is of the pass {transform}, which replay imports only when it is "
                         f"named: conform replay {key} --report {report} --transform {transform}")
    raise UsageError(f"outcome {key} is of transform {transform!r:.60}, which no loaded plugin registers: "
                     "name the plugin that adds it with --plugin MODULE", choices=sorted(transforms()))


def _check_recorded_case(source: object, spec: object, seed: object, params: object, cases: Sequence[str],
                         key: str) -> None:
    """Refuse a recorded case this process must not build: an unknown source, a malformed
    spec, a factory nobody trusted. Nothing the record names is imported or run."""
    import conform.known  # noqa: F401  (trusts the witness modules, whose cases are recorded too)
    from generators.sources import SpecError, get_source, source_names, trust_factory

    for path in cases:
        trust_factory(path)
    if not isinstance(source, str) or source not in source_names():
        raise UsageError(f"outcome {key} names an unknown source {source!r:.60}", choices=source_names())
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise UsageError(f"outcome {key}: seed {seed!r:.60} is not a non-negative integer")
    if not isinstance(params, dict):
        raise UsageError(f"outcome {key}: params {params!r:.60} is not a JSON object")
    try:
        get_source(source).validate(spec)
    except SpecError as exc:
        raise UsageError(f"outcome {key} holds a {source} case this run will not build: {exc}") from None


def _report(args: argparse.Namespace) -> int:
    from conform import campaign, jsonl, record
    from conform.cli import _print_summary
    from conform.store import FILENAME, Store

    report_dir = Path(args.report)
    if args.from_file is not None:
        jsonl.read_jsonl(Path(args.from_file))  # a bad file is refused before anything is written
    elif not report_dir.is_dir():
        raise UsageError(f"report directory {report_dir} does not exist; run `conform run --report {report_dir}`")
    elif not (report_dir / FILENAME).exists() and not record.legacy_files(report_dir):
        raise UsageError(f"no results in {report_dir}: expected {FILENAME} (or an older {record.RESULTS}); "
                         f"run `conform run --report {report_dir}`")
    elif not (report_dir / FILENAME).exists():
        for path in record.legacy_files(report_dir):
            jsonl.read_jsonl(path)
        if (report_dir / record.SUMMARY).exists():
            jsonl.read_summary(report_dir / record.SUMMARY)
    if args.from_file is not None:
        record.prepare_report_dir(report_dir, force=False)
    run_ids: list[int] | None = None
    with Store.open(report_dir) as store:
        if args.from_file is not None:
            run_id, new = record.import_jsonl(store, Path(args.from_file))
            print(f"imported {args.from_file}: {new} outcomes new to {store.path}")
            run_ids = [run_id]
        elif store.latest_run() is None:
            legacy = record.legacy_files(report_dir)
            print(f"conform: the record store {store.path} is empty; importing "
                  f"{', '.join(map(str, legacy)) or 'nothing'} (the files stay as they are)", file=sys.stderr)
            run_ids = record.import_legacy(store, report_dir)
        run_id = args.run if args.run is not None else (run_ids[-1] if run_ids else store.latest_run())
        if run_id is None:
            raise UsageError(f"no runs recorded in {store.path}; run `conform run --report {report_dir}`")
        run = store.run(run_id)
        meta = dict(run["meta"])
        if run["status"] == "running":
            meta["interrupted"] = True  # the campaign stopped before it closed its run
        witnesses = {k: v for k, v in store.known_status(run_id).items() if v.get("stale") is not None}
    summary = campaign.finish(report_dir, meta=meta, witnesses=witnesses, run_ids=[run_id])
    _print_summary(summary, report_dir)
    if args.junit:
        _write_junit(Path(args.junit), report_dir, summary)
    return _exit_status(summary)


def _export(args: argparse.Namespace) -> int:
    from conform import jsonl
    from conform.store import Store

    with Store.open(Path(args.report), create=False) as store:
        if args.run is not None:
            store.run(args.run)  # an unknown run is a usage error naming the valid ones
        outcomes = store.outcomes(args.run)
    count = jsonl.write_jsonl(Path(args.jsonl), outcomes)
    print(f"{count} outcomes written to {args.jsonl}")
    return EXIT_OK


def _merge(args: argparse.Namespace) -> int:
    from conform import campaign, record
    from conform.cli import _print_summary
    from conform.store import Store

    into = Path(args.into)
    sources = [Path(d) for d in args.dirs]
    for src in sources:
        if into.exists() and src.resolve() == into.resolve():
            raise UsageError(f"cannot merge {src} into itself; name another --into directory")
        Store.open(src, create=False).close()  # every source is checked before anything is written
    record.prepare_report_dir(into, force=args.force)
    run_ids: list[int] = []
    metas: list[dict[str, Any]] = []
    witnesses: dict[str, dict[str, Any]] = {}
    with Store.open(into) as store:
        for src in sources:
            ids = store.merge(src)
            run_ids.extend(i for i in ids if i not in run_ids)
            _copy_repros(src, into)
        for run_id in run_ids:
            metas.append(store.run(run_id)["meta"])
            for entry, status in store.known_status(run_id).items():
                if status.get("stale") is None:
                    continue
                if entry not in witnesses or (status["stale"] and not witnesses[entry]["stale"]):
                    witnesses[entry] = status
        total = store.count()
    meta = _merged_meta(metas, sources)
    summary = campaign.finish(into, meta=meta, witnesses=witnesses, run_ids=run_ids)
    print(f"merged {len(sources)} report directories ({len(run_ids)} runs) into {into}: "
          f"{total} distinct outcomes in its store")
    _print_summary(summary, into)
    if args.junit:
        _write_junit(Path(args.junit), into, summary)
    return _exit_status(summary)


def _copy_repros(src: Path, into: Path) -> None:
    from conform.store import REPRO

    directory = src / REPRO
    if not directory.is_dir():
        return
    (into / REPRO).mkdir(exist_ok=True)
    for script in directory.glob("*.py"):
        target = into / REPRO / script.name
        if not target.exists():  # a key's repro is the same wherever it was written
            shutil.copy2(script, target)


def _merged_meta(metas: list[dict[str, Any]], sources: list[Path]) -> dict[str, Any]:
    def same(name: str) -> Any:
        values = {repr(m.get(name)) for m in metas}
        return metas[0].get(name) if len(values) == 1 and metas else None

    return {
        "merged_from": [str(s) for s in sources],
        "shards": sorted({m["shard"] for m in metas if m.get("shard")}),
        "seed": same("seed"),
        "budget_s": same("budget_s"),
        "max_cases": same("max_cases"),
        "duration_s": max((float(m.get("duration_s") or 0.0) for m in metas), default=0.0),
        "workers": sum(int(m.get("workers") or 0) for m in metas),
        "transforms": sorted({t for m in metas for t in m.get("transforms", [])}),
        "sources": sorted({s for m in metas for s in m.get("sources", [])}),
        "interrupted": any(m.get("interrupted") for m in metas),
        "environment": metas[0].get("environment", {}) if metas else {},
    }


HANDLERS = {"replay": _replay, "report": _report, "export": _export, "merge": _merge}
