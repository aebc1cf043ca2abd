"""The report's coverage view: the functions a transform calls, highlighted with pygments,
listing the lines not reached with their context; every other stretch of a function is
one line that counts its lines and how many were reached."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

from markupsafe import Markup

MAX_LINES = 4000  # listed lines per side and transform; the share is computed on all of them
CONTEXT = 2  # lines listed on each side of a line not reached


@dataclasses.dataclass
class Listing:
    side: str
    file: str
    measured: int
    reached: int
    blocks: list[list[tuple[int, str, Markup]]]  # per function: (line number, mark, html)
    clipped: int
    error: str | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.reached / self.measured if self.measured else 0.0


def _spans(tree: ast.AST, lines: set[int]) -> list[tuple[int, int]]:
    """The (first, last) lines of the innermost functions holding any of ``lines``."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            last = node.end_lineno or node.lineno
            if any(first <= n <= last for n in lines):
                spans.append((first, last))
    # keep innermost: drop a span that strictly contains another span holding the same lines
    spans.sort()
    kept: list[tuple[int, int]] = []
    for first, last in spans:
        inner = [s for s in spans if s != (first, last) and first <= s[0] and s[1] <= last]
        own = {n for n in lines if first <= n <= last} - {n for s in inner for n in lines if s[0] <= n <= s[1]}
        if own or not inner:
            kept.append((first, last))
    merged: list[tuple[int, int]] = []
    for first, last in sorted(kept):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    covered = {n for a, b in merged for n in range(a, b + 1)}
    for n in sorted(lines - covered):  # module-level lines: show them alone
        merged.append((n, n))
    return sorted(merged)


def _highlighted_lines(source: str) -> list[Markup]:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    html = highlight(source, PythonLexer(stripnl=False, ensurenl=True), HtmlFormatter(nowrap=True))
    # the HTML formatter closes its spans at every line end, so lines map one to one
    return [Markup(line) for line in html.split("\n")]


def listing(side: str, data: dict[str, Any]) -> Listing:
    path = Path(str(data.get("file", "")))
    lines = {int(n) for n in data.get("lines") or []}
    reached = {int(n) for n in data.get("reached") or []} & lines
    result = Listing(side=side, file=str(path), measured=len(lines), reached=len(reached), blocks=[], clipped=0)
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError) as exc:
        result.error = f"cannot read {path}: {type(exc).__name__}"
        return result
    html = _highlighted_lines(source)
    missed = lines - reached
    # a reader looks for what was not reached: those lines with a little context are listed,
    # every other stretch is one line that says what it holds
    shown = {n for m in missed for n in range(m - CONTEXT, m + CONTEXT + 1)}
    budget = MAX_LINES
    for first, last in _spans(tree, lines):
        block: list[tuple[int, str, Markup]] = []
        n = first
        end = min(last, len(html))
        while n <= end:
            if budget <= 0:
                result.clipped += 1
                n += 1
                continue
            budget -= 1
            if n == first or n in shown:
                block.append((n, "hit" if n in reached else "miss" if n in lines else "", html[n - 1]))
                n += 1
                continue
            run = n
            while run <= end and run != first and run not in shown:
                run += 1
            block.append((n, "fold", Markup(_stretch(range(n, run), lines, reached))))
            n = run
        if block:
            result.blocks.append(block)
    return result


def _stretch(numbers: range, lines: set[int], reached: set[int]) -> str:
    measured = sum(1 for n in numbers if n in lines)
    if not measured:
        return f"{len(numbers)} lines not measured"
    hit = sum(1 for n in numbers if n in reached)
    return f"{len(numbers)} lines, {hit} of {measured} measured reached"


def coverage_view(coverage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per transform, its upstream and reference listings."""
    if not coverage:
        return []
    view = []
    for transform, sides in sorted(coverage.items()):
        listings = [listing(side, sides[side]) for side in ("upstream", "reference")
                    if isinstance(sides.get(side), dict)]
        view.append({"transform": transform, "listings": listings})
    return view

