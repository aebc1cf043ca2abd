"""The report's plots: inline SVG drawn with matplotlib's SVG backend.

Each plot is a self-contained ``<svg>`` element: text stays text (no glyph files), the
XML prolog, the metadata block and namespace URLs are dropped, and element ids carry a
per-plot prefix so several plots can share one HTML page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from conform.outcome import Outcome, Verdict

GRID = 240  # points per cumulative curve, whatever the number of outcomes

COLOURS = {"new": "#d62728", "known": "#e8a33d", "pass": "#2ca02c", "skip": "#8c8c8c",
           "timeout": "#9467bd", "crash": "#1f77b4"}
_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "fx-conform",
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _svg(fig: Any, prefix: str) -> Markup:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    # the page sizes the plot; keep the drawing's aspect ratio
    text = re.sub(r'<svg([^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r'<svg\1 class="plot"', text, count=1)
    return Markup(text)


def _figure(width: float, height: float, ncols: int = 1, *, right: float = 0.98,
            bottom: float = 0.17) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    # fixed margins: a layout engine would measure every label and costs more than the drawing
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.07, right=right, bottom=bottom, top=0.9, wspace=0.22)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _plain_log_axis(ax: Any) -> None:
    """A symlog y axis labelled 0, 10, 100, 1,000 (no mathtext: labels are plain text)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("symlog", linthresh=10)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(bottom=0)


def _cumulative(times: Sequence[float], grid: Any) -> Any:
    import numpy as np

    ordered = np.sort(np.asarray(times, dtype=float))
    return np.searchsorted(ordered, grid, side="right")


def outcomes_over_time(outcomes: list[Outcome]) -> Markup | None:
    """Cumulative outcomes by verdict and distinct divergence origins over the run, from
    ``notes["t"]``; None when no outcome carries a time."""
    import matplotlib
    import numpy as np

    by_verdict: dict[str, list[float]] = {}
    first_origin: dict[tuple[str, str], float] = {}
    for o in outcomes:
        t = o.notes.get("t")
        if not isinstance(t, int | float):
            continue
        label = "new" if o.verdict is Verdict.FAIL else o.verdict.value
        by_verdict.setdefault(label, []).append(float(t))
        if o.is_divergence:
            key = (label, o.origin)
            if t < first_origin.get(key, float("inf")):
                first_origin[key] = float(t)
    if not by_verdict:
        return None
    end = max(max(ts) for ts in by_verdict.values()) or 1.0
    grid = np.linspace(0.0, end, GRID)
    with matplotlib.rc_context(_RC):
        fig, (left, right) = _figure(9.5, 2.8, 2)
        for label in ("pass", "skip", "known", "new"):
            if label in by_verdict:
                left.plot(grid, _cumulative(by_verdict[label], grid), label=label, color=COLOURS[label])
        _plain_log_axis(left)
        left.set_title("outcomes so far, by verdict")
        left.set_xlabel("seconds since the run started")
        left.legend(loc="best", frameon=False)
        for label in ("known", "new"):
            times = [t for (v, _), t in first_origin.items() if v == label]
            if times:
                right.step(grid, _cumulative(times, grid), where="post", label=f"{label} origins",
                           color=COLOURS[label])
        right.set_title("distinct divergence origins so far")
        right.set_xlabel("seconds since the run started")
        if first_origin:
            right.legend(loc="lower right", frameon=False)
        return _svg(fig, "plot-time")


def coverage_over_time(coverage: dict[str, Any]) -> Markup | None:
    """Per transform, the share of upstream (solid) and reference (dashed) lines reached."""
    import matplotlib

    drawn = False
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(9.5, 3.0, right=0.72)
        colours = matplotlib.colormaps["tab10"]
        for i, (transform, sides) in enumerate(sorted(coverage.items())):
            colour = colours(i % 10)
            for side, style in (("upstream", "-"), ("reference", "--")):
                series = (sides.get(side) or {}).get("series") or []
                points = [(float(t), float(p)) for t, p in series]
                if not points:
                    continue
                ax.plot([t for t, _ in points], [p for _, p in points], style, color=colour,
                        label=f"{transform} ({side})")
                drawn = True
        if not drawn:
            return None
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of lines reached")
        ax.set_xlabel("seconds since the run started")
        ax.set_title("coverage of the transforms' functions (solid: upstream, dashed: reference)")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
        return _svg(fig, "plot-coverage")


def history(runs: list[dict[str, Any]]) -> Markup | None:
    """Outcome counts and distinct cases per run across the history; None under 2 runs."""
    import matplotlib

    if len(runs) < 2:
        return None
    labels = [str(r.get("started") or r.get("run_id") or i)[:16].replace("T", " ") for i, r in enumerate(runs)]
    xs = list(range(len(runs)))
    with matplotlib.rc_context(_RC):
        fig, (left, right) = _figure(9.5, 3.0, 2, bottom=0.26)
        for name in ("new", "known", "pass", "timeout", "crash"):
            ys = [int((r.get("counts") or {}).get(name, 0) or 0) for r in runs]
            if any(ys):
                left.plot(xs, ys, marker="o", markersize=3, label=name, color=COLOURS[name])
        _plain_log_axis(left)
        left.set_title("outcomes per run")
        left.legend(loc="best", frameon=False, fontsize=8)
        right.bar(xs, [int(r.get("cases", 0) or 0) for r in runs], color="#4c72b0")
        right.set_title("distinct cases per run")
        step = max(1, len(runs) // 8)
        for ax in (left, right):
            ax.set_xticks(xs[::step], labels[::step], rotation=30, ha="right", fontsize=7)
        return _svg(fig, "plot-history")
