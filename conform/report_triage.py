"""The report's triage data: divergences grouped by origin with their examples, the
transform x source cells, the known-divergence table and the bug reports on disk.

Everything here returns plain values for the template; recorded strings stay strings (the
template escapes them). The only recorded values that become link targets are repro paths,
and only after they match ``repro/<16 hex digits>.py``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

from markupsafe import Markup

from conform.outcome import Outcome, Stage, Verdict, stable_key

EXAMPLES_PER_ORIGIN = 8  # of a new origin; the rest are counted and one `conform export` away
KNOWN_EXAMPLES_PER_ORIGIN = 3  # of an origin every outcome of which a registry entry explains
REPROS_PER_ORIGIN = 1  # repro sources shown inline per origin; the rest are links
REPROS_TOTAL = 60  # inline repro sources in the whole page (pygments is the slow part)
DIFF_CHARS = 4000
BUG_REPORT_CHARS = 40_000

_REPRO_PATH = re.compile(r"repro/[0-9a-f]{16}\.py")
_KEY = re.compile(r"[0-9a-f]{16}")
_BUG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.md")
_ISSUE_URL = re.compile(r"https://github\.com/pytorch/pytorch/(issues|pull)/[0-9]{1,9}")


def anchor(kind: str, *parts: str) -> str:
    """An element id built from a hash, never from the recorded text itself."""
    return f"{kind}-{stable_key(*parts)}"


def verdict_label(verdict: Verdict) -> str:
    return "new" if verdict is Verdict.FAIL else verdict.value


def repro_path(outcome: Outcome, report_dir: Path | None) -> str | None:
    """The outcome's repro script as a path relative to the report directory, when it
    is of the one accepted shape and the file exists."""
    if report_dir is None:
        return None
    candidates = []
    if outcome.repro and _REPRO_PATH.fullmatch(outcome.repro):
        candidates.append(outcome.repro)
    if _KEY.fullmatch(outcome.key):
        candidates.append(f"repro/{outcome.key}.py")
    for candidate in candidates:
        if (report_dir / candidate).is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _python_formatter() -> tuple[Any, Any]:
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return PythonLexer(), HtmlFormatter(cssclass="hl", nowrap=True)


def highlight_python(source: str) -> Markup:
    """``source`` as pygments HTML (escaped by pygments), without the wrapping block."""
    from pygments import highlight

    lexer, formatter = _python_formatter()
    return Markup(highlight(source, lexer, formatter))


def pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    rules = HtmlFormatter(cssclass="hl", style="default").get_style_defs(".hl").splitlines()
    # only the rules scoped to highlighted blocks: the page styles its own <pre> and tables
    return "\n".join(rule for rule in rules if rule.startswith(".hl"))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… {len(text) - limit} more characters (full text: conform export)"


def upstream_side(outcome: Outcome) -> bool:
    """Whether the outcome blames upstream: a crash, timeout or invalid graph while applying
    the upstream transform, or upstream's result disagreeing with eager. An outcome records
    the side it belongs to; one recorded before outcomes did is judged by its stage and place."""
    if outcome.side is not None:
        return outcome.side == "upstream"
    if outcome.stage is Stage.TRANSFORM_UPSTREAM:
        return True
    place = outcome.place or ""
    return place.startswith("upstream:") or place.startswith("upstream@")


@dataclasses.dataclass
class Example:
    outcome: Outcome
    shrunk: bool
    diffs: list[str]
    repro: str | None  # validated relative path
    repro_html: Markup | None
    replay: str

    @property
    def verdict(self) -> str:
        return verdict_label(self.outcome.verdict)


@dataclasses.dataclass
class OriginGroup:
    origin: str
    anchor: str
    transform: str
    stage: str
    symptom: str
    exception: str
    verdict: str  # "new" when any outcome of the origin is new, else "known"
    known_ids: list[str]
    count: int
    first_seen: float | None
    examples: list[Example]
    more: int
    upstream_side: bool
    message: str


def _example_order(o: Outcome) -> tuple[int, int, int]:
    return (0 if o.notes.get("shrunk_from") else 1, 0 if o.verdict is Verdict.FAIL else 1, len(o.message))


def origin_groups(outcomes: list[Outcome], report_dir: Path | None, replay_dir: str) -> list[OriginGroup]:
    """Divergences grouped by origin, new ones first, then by count."""
    grouped: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        if o.is_divergence:
            grouped[o.origin].append(o)
    budget = REPROS_TOTAL
    groups = []
    ordered = sorted(grouped.items(),
                     key=lambda kv: (all(o.verdict is Verdict.KNOWN for o in kv[1]), -len(kv[1]), kv[0]))
    for origin, items in ordered:
        new = any(o.verdict is Verdict.FAIL for o in items)
        chosen = sorted(items, key=_example_order)[:EXAMPLES_PER_ORIGIN if new else KNOWN_EXAMPLES_PER_ORIGIN]
        # a known origin's script is a link: its entry's bug report carries the standalone one
        inline = REPROS_PER_ORIGIN if new else 0
        examples = []
        for i, o in enumerate(chosen):
            path = repro_path(o, report_dir)
            html = None
            if path is not None and i < inline and budget > 0:
                try:
                    text = (report_dir / path).read_text(encoding="utf-8", errors="replace")  # type: ignore[operator]
                    html = highlight_python(text)
                    budget -= 1
                except OSError:
                    html = None
            examples.append(Example(
                outcome=o, shrunk=bool(o.notes.get("shrunk_from")),
                diffs=[_clip(d.render(), DIFF_CHARS) for d in o.diffs],
                repro=path, repro_html=html, replay=f"conform replay {o.key} --report {replay_dir}{o.replay_options}",
            ))
        times = [t for o in items if isinstance(t := o.notes.get("t"), int | float)]
        first = items[0]
        groups.append(OriginGroup(
            origin=origin, anchor=anchor("origin", origin), transform=first.transform,
            stage=first.stage.value if first.stage else "-", symptom=first.symptom.value if first.symptom else "-",
            exception=first.exception or "-",
            verdict="new" if new else "known",
            known_ids=sorted({o.known_id for o in items if o.known_id}),
            count=len(items), first_seen=min(times) if times else None,
            examples=examples, more=len(items) - len(examples),
            upstream_side=any(upstream_side(o) for o in items), message=chosen[0].message,
        ))
    return groups


@dataclasses.dataclass
class Cell:
    transform: str
    source: str
    anchor: str
    counts: dict[str, int]
    origins: list[tuple[str, str, str, int]]  # (origin, anchor, verdict, count), new first
    skips: list[tuple[str, int, str]]  # (origin, count, a message), most frequent first


def cells(outcomes: list[Outcome]) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """The transform x source matrix: per cell the verdict counts and its origins."""
    counts: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    origins: dict[tuple[str, str], collections.Counter[tuple[str, str]]] = collections.defaultdict(
        collections.Counter)
    skips: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    skip_message: dict[str, str] = {}
    for o in outcomes:
        where = (o.transform, o.source)
        counts[where][verdict_label(o.verdict)] += 1
        if o.is_divergence:
            origins[where][(o.origin, verdict_label(o.verdict))] += 1
        elif o.verdict is Verdict.SKIP:
            skips[where][o.origin] += 1
            skip_message.setdefault(o.origin, o.message)
    result = {}
    for where, counter in counts.items():
        per_origin: dict[str, list[Any]] = {}
        for (origin, verdict), n in origins[where].items():
            entry = per_origin.setdefault(origin, [origin, anchor("origin", origin), "known", 0])
            entry[3] += n
            if verdict == "new":
                entry[2] = "new"
        listed = sorted(per_origin.values(), key=lambda e: (e[2] != "new", -e[3], e[0]))
        skipped = [(origin, n, _clip(skip_message.get(origin, ""), 300))
                   for origin, n in skips[where].most_common(10)]
        result[where] = Cell(where[0], where[1], anchor("cell", *where), dict(counter),
                             [tuple(e) for e in listed], skipped)  # type: ignore[misc]
    # transforms with new divergences first, then alphabetical
    transforms = sorted({t for t, _ in counts}, key=lambda t: (
        -sum(c.counts.get("new", 0) for (tt, _), c in result.items() if tt == t), t))
    sources = sorted({s for _, s in counts})
    return transforms, sources, result


def issue_link(issue: Any) -> str | None:
    """An upstream issue value usable as a link: only a pytorch/pytorch issue or pull URL."""
    if isinstance(issue, str) and _ISSUE_URL.fullmatch(issue):
        return issue
    return None


def known_rows(known: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry_id, entry in sorted(known.items()):
        issue = entry.get("issue")
        rows.append({
            "id": entry_id, "transform": entry.get("transform", "-"), "kind": entry.get("kind", "-"),
            "seen": entry.get("seen", 0) or 0, "stale": entry.get("stale"),
            "stale_reason": entry.get("stale_reason", ""), "reason": entry.get("reason", ""),
            "issue_url": issue_link(issue),
            "issue_text": "unfiled" if not issue or issue == "unfiled" else str(issue),
        })
    # stale entries first (they need attention), then the ones this run reached
    rows.sort(key=lambda r: (not r["stale"], -r["seen"], r["id"]))
    return rows


def worth_filing(known: dict[str, Any], groups: list[OriginGroup]) -> dict[str, list[Any]]:
    """Reached upstream-bug entries without a filed issue, and new upstream-side origins."""
    entries = [r for r in known_rows(known)
               if r["kind"] == "upstream-bug" and r["seen"] > 0 and r["issue_url"] is None]
    origins = [g for g in groups if g.verdict == "new" and g.upstream_side]
    return {"entries": entries, "origins": origins}


def bug_reports(report_dir: Path | None) -> list[dict[str, Any]]:
    """The ``bugs/*.md`` files of the report directory: name, relative link, title, and the
    text of a new divergence's report (named by its outcome key) to show in the page; a
    known entry's report (named by the entry) is a link."""
    if report_dir is None:
        return []
    directory = report_dir / "bugs"
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.md")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            text = f"(cannot read {path.name}: {exc})"
        name = path.name
        title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), name)
        found.append({
            "name": name, "href": f"bugs/{name}" if _BUG_NAME.fullmatch(name) else None,
            "title": title[:200], "text": _clip(text, BUG_REPORT_CHARS) if _KEY.fullmatch(path.stem) else None,
        })
    return found
