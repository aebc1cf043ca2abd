"""The HTML conformance report, rendered with jinja2 from the merged outcomes and summary.

Self-contained: inline CSS, no scripts or fonts from the network, every recorded string
escaped. The only links are to the report's own repro scripts (``repro/<key>.py``): a record
is data from a file anyone may have written, so any other path or URL it holds is shown as
text, never used as a link.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any

import jinja2

from conform.outcome import Outcome, Verdict

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("conform", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

VERDICTS = [v.value for v in Verdict]

#: The one shape of link a report holds: a repro script the recorder wrote next to it.
_REPRO_LINK = re.compile(r"repro/[0-9a-f]{16}\.py")


def repro_link(path: object) -> str | None:
    """``path`` when it is a repro script inside the report directory, else None."""
    return path if isinstance(path, str) and _REPRO_LINK.fullmatch(path) else None


_ENV.filters["repro_link"] = repro_link


def _matrix(outcomes: list[Outcome]) -> tuple[list[str], list[str], dict[tuple[str, str], dict[str, int]]]:
    cells: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        cells[(o.transform, o.source)][o.verdict.value] += 1
    transforms = sorted({t for t, _ in cells})
    sources = sorted({s for _, s in cells})
    return transforms, sources, {k: dict(v) for k, v in cells.items()}


def _groups(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Divergences grouped by origin, new ones first, each with its first example."""
    groups: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        if o.is_divergence:
            groups[o.origin].append(o)
    ordered = sorted(groups.items(), key=lambda kv: (kv[1][0].verdict is Verdict.KNOWN, kv[0]))
    return [
        {"origin": origin, "count": len(items), "example": items[0], "keys": [o.key for o in items[:20]]}
        for origin, items in ordered
    ]


def render(outcomes: list[Outcome], summary: dict[str, Any]) -> str:
    transforms, sources, cells = _matrix(outcomes)
    return _ENV.get_template("index.html.j2").render(
        summary=summary,
        transforms=transforms,
        sources=sources,
        cells=cells,
        verdicts=VERDICTS,
        groups=_groups(outcomes),
    )


def write(report_dir: Path, outcomes: list[Outcome], summary: dict[str, Any]) -> Path:
    path = report_dir / "index.html"
    path.write_text(render(outcomes, summary), encoding="utf-8")
    return path
