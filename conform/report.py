"""The HTML conformance report, rendered with jinja2 from the merged outcomes and summary.

One self-contained page: inline CSS, inline SVG plots (matplotlib), one small inline script
allowed by its hash in the page's Content-Security-Policy, nothing fetched from the network.
The page reads fully without the script, which only filters, searches and sorts the triage
table. Every recorded string is escaped by jinja2's autoescape; links are relative paths
inside the report directory (``repro/<key>.py``, ``bugs/<name>.md``, ``#anchors``) or
upstream pytorch issue URLs.

Example::

    from conform import record, report
    outcomes = record.read_results("reports")
    report.write(Path("reports"), outcomes, record.summarize(outcomes))
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from conform import report_coverage, report_plots, report_triage
from conform.outcome import Outcome, Verdict

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("conform", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

VERDICTS = ["new", "known", "pass", "skip"]
UNKNOWN = "unknown"


@functools.lru_cache(maxsize=1)
def _script() -> tuple[Markup, str]:
    """The page's script and its CSP source expression."""
    text = importlib.resources.files("conform").joinpath("templates/report.js.j2").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
    return Markup(text), f"'sha256-{digest}'"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _seconds(value: Any) -> str:
    seconds = _number(value)
    if seconds is None:
        return UNKNOWN
    if seconds >= 120:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)} min {rest:.0f} s"
    return f"{seconds:.1f} s"


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return UNKNOWN
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def metadata(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs describing the run; ``unknown`` where the summary says nothing."""
    env = summary.get("environment") or {}
    if not isinstance(env, dict):
        env = {}
    cases = _number(summary.get("cases"))
    duration = _number(summary.get("duration_s"))
    rate = _number(summary.get("cases_per_s"))
    if rate is None and cases is not None and duration:
        rate = cases / duration
    budget = _number(summary.get("budget_s"))
    rows = [
        ("started", _text(summary.get("started"))),
        ("duration", _seconds(duration)),
        ("distinct cases", _text(int(cases)) if cases is not None else UNKNOWN),
        ("cases / s", f"{rate:.1f}" if rate is not None else UNKNOWN),
        ("outcomes", _text(summary.get("outcomes"))),
        ("seed", _text(summary.get("seed"))),
        ("workers", _text(summary.get("workers"))),
        ("budget", _seconds(budget) if budget is not None else "none" if "budget_s" in summary else UNKNOWN),
    ]
    if summary.get("shard") is not None:
        shard = summary["shard"]
        if isinstance(shard, list | tuple):
            text = "/".join(str(s) for s in shard)
        elif isinstance(shard, dict):
            text = ", ".join(f"{k} {v}" for k, v in shard.items())
        else:
            text = str(shard)
        rows.append(("shard", text))
    rows += [
        ("torch", _text(env.get("torch"))),
        ("python", _text(env.get("python"))),
        ("fx-conform", _text(env.get("fx_conform"))),
        ("platform", _text(env.get("platform"))),
        ("devices", _text(env.get("devices"))),
    ]
    if env.get("cuda_device"):
        rows.append(("GPU", str(env["cuda_device"])))
    return rows


def banner(summary: dict[str, Any]) -> str | None:
    """What to say at the top when the run did not end normally."""
    crashed = summary.get("crashed")
    if crashed:
        reason = f": {crashed}" if isinstance(crashed, str) else ""
        return (f"This run crashed{reason}. The report shows what was recorded before it stopped; "
                "counts and plots are incomplete.")
    if summary.get("interrupted"):
        return ("This run was interrupted before its budget was spent. The report shows what was "
                "recorded until then.")
    return None


def _counts(outcomes: list[Outcome], summary: dict[str, Any]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for o in outcomes:
        counts["new" if o.verdict is Verdict.FAIL else o.verdict.value] += 1
    if not outcomes:  # a report from a summary alone
        recorded = summary.get("counts") or {}
        counts.update({("new" if k == "fail" else k): int(v) for k, v in recorded.items()
                       if ("new" if k == "fail" else k) in counts})
    return counts


def _known_totals(summary: dict[str, Any]) -> tuple[int | None, int | None]:
    known = summary.get("known") or {}
    reached = summary.get("known_reached")
    total = summary.get("known_total")
    if reached is None and known:
        reached = sum(1 for v in known.values() if (v.get("seen") or 0) > 0)
    if total is None and known:
        total = len(known)
    return reached, total


def render(outcomes: list[Outcome], summary: dict[str, Any], *, report_dir: Path | None = None,
           history: list[dict[str, Any]] | None = None, coverage: dict[str, Any] | None = None) -> str:
    """The report page for ``outcomes`` and ``summary`` (see :func:`write`)."""
    report_dir = Path(report_dir) if report_dir is not None else None
    replay_dir = str(report_dir or "reports")
    groups = report_triage.origin_groups(outcomes, report_dir, replay_dir)
    transforms, sources, cells = report_triage.cells(outcomes)
    known = summary.get("known") or {}
    reached, total = _known_totals(summary)
    script, script_hash = _script()
    plots = [p for p in (
        ("Outcomes over the run", report_plots.outcomes_over_time(outcomes)),
        ("Coverage over the run", report_plots.coverage_over_time(coverage) if coverage else None),
        ("History across runs", report_plots.history(history) if history else None),
    ) if p[1] is not None]
    return _ENV.get_template("index.html.j2").render(
        summary=summary,
        metadata=metadata(summary),
        banner=banner(summary),
        counts=_counts(outcomes, summary),
        new_origins=[g for g in groups if g.verdict == "new"],
        transforms=transforms,
        sources=sources,
        cells=cells,
        verdicts=VERDICTS,
        groups=groups,
        group_transforms=sorted({g.transform for g in groups}),
        plots=plots,
        coverage=report_coverage.coverage_view(coverage),
        known=report_triage.known_rows(known),
        known_reached=reached,
        known_total=total,
        worth_filing=report_triage.worth_filing(known, groups),
        bugs=report_triage.bug_reports(report_dir),
        pygments_css=Markup(report_triage.pygments_css()),
        script=script,
        script_hash=script_hash,
        examples_cap=report_triage.EXAMPLES_PER_ORIGIN,
        known_examples_cap=report_triage.KNOWN_EXAMPLES_PER_ORIGIN,
        replay_dir=replay_dir,
    )


def write(report_dir: Path, outcomes: list[Outcome], summary: dict[str, Any], *,
          history: list[dict[str, Any]] | None = None, coverage: dict[str, Any] | None = None) -> Path:
    """Render ``report_dir/index.html`` and return its path.

    Args:
        report_dir: the report directory; ``repro/`` and ``bugs/`` are read from it.
        outcomes: every outcome of the run; ``notes["t"]`` (seconds since the start) feeds
            the plot over time, ``notes["shrunk_from"]`` marks a shrunk example.
        summary: the summary document (:func:`conform.record.summarize`), optionally with
            ``interrupted``, ``crashed``, ``duration_s``, ``cases_per_s``, ``environment``,
            ``known``, ``known_reached``, ``known_total`` and ``shard``.
        history: per-run dicts, oldest first (``run_id``, ``started``, ``duration_s``,
            ``cases``, ``counts``); plotted from two runs on.
        coverage: ``{transform: {"upstream": {"file", "lines", "reached", "series"},
            "reference": {...}}}``.
    """
    report_dir = Path(report_dir)
    path = report_dir / "index.html"
    html = render(outcomes, summary, report_dir=report_dir, history=history, coverage=coverage)
    path.write_text(html, encoding="utf-8")
    return path
