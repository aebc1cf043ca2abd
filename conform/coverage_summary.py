"""Coverage of a campaign, per transform: merges the workers' probe snapshots.

The supervisor keeps one :class:`CoverageAccumulator` for the campaign and adds every
snapshot a worker sends (:meth:`CoverageAccumulator.add`, with the campaign clock). What a
module has reached is the union over all workers, so lines a transform shares with another
(``normalize_args`` and ``normalize_args_typed`` both run ``NormalizeArgs``) count for both.

:meth:`CoverageAccumulator.report` gives, per transform and side, the shape the HTML report
reads::

    {"split_module": {
        "upstream": {
            "file": "/.../torch/fx/passes/split_module.py",   # the target's module
            "module": "torch.fx.passes.split_module",
            "lines": [64, 65, ...],        # measurable lines of this file (coverage_map)
            "reached": [64, 71, ...],      # those reached by the campaign
            "unreached": [[65, 65], [80, 92], ...],   # the rest, as inclusive ranges
            "percent": 81.2,               # share of measurable lines reached, all files
            "series": [[0.0, 0.0], [3.1, 40.2], ...], # [seconds, percent], all files
            "branches": {"total": 168, "reached": 97, "percent": 57.7,
                         "unreached": [[120, 125], [120, -55], ...]},  # this file's arcs
            "branch_percent": 55.0,        # share of branch arcs reached, all files
            "files": [ {file, module, lines, reached, unreached, percent, branches}, ... ],
        },
        "reference": {...same keys...}}}

``files`` lists the side's other files (a ``covers`` module, the reference's private
helpers); it is empty for a single-file side. Top-level ``percent``, ``series`` and
``branch_percent`` count all files of the side; ``lines``, ``reached``, ``unreached`` and
``branches`` describe ``file`` alone, as each entry of ``files`` describes its own. A series
gets a point when its percent changes and one at the latest time, so it is non-decreasing in
both coordinates.

:meth:`CoverageAccumulator.summary` is the compact form for the campaign summary:
``{transform: {"upstream": percent, "reference": percent, "upstream_branches": percent,
"reference_branches": percent}}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conform.coverage_map import SIDES, Measurable, measurable
from conform.registry import TransformSpec


def ranges(lines: Iterable[int]) -> list[list[int]]:
    """Sorted inclusive ``[first, last]`` runs of consecutive numbers."""
    runs: list[list[int]] = []
    for n in sorted(set(lines)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return runs


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 100.0


class CoverageAccumulator:
    """The union of the workers' snapshots, and each side's percent over time.

    Args:
        rows: the campaign's rows; snapshots of other modules are kept but reported by none.
    """

    def __init__(self, rows: Iterable[TransformSpec]) -> None:
        self.rows = list(dict.fromkeys(rows))
        self._measurable = {row.name: measurable(row) for row in self.rows}
        self.lines: dict[str, set[int]] = {}  # module -> reached lines
        self.arcs: dict[str, set[tuple[int, int]]] = {}  # module -> reached arcs
        self.series: dict[tuple[str, str], list[list[float]]] = {}
        self.last_t = 0.0
        for row in self.rows:
            for side in SIDES:
                self.series[(row.name, side)] = [[0.0, self._side_percent(row.name, side)]]

    def _reached(self, m: Measurable) -> set[int]:
        return self.lines.get(m.module, set()) & m.lines

    def _reached_branches(self, m: Measurable) -> set[tuple[int, int]]:
        return self.arcs.get(m.module, set()) & m.branches

    def _side_percent(self, transform: str, side: str) -> float:
        files = self._measurable[transform][side]
        return _percent(sum(len(self._reached(m)) for m in files), sum(len(m.lines) for m in files))

    def add(self, snapshot: dict[str, dict[str, Any]], t: float) -> dict[str, int]:
        """Merge one worker's :meth:`~conform.coverage_probe.CoverageProbe.snapshot` taken
        at campaign time ``t`` (seconds).

        Returns:
            ``{transform: measurable lines (both sides) reached for the first time}`` for
            every row, the ``new_lines`` a :class:`~conform.scheduler.Scheduler` wants.
        """
        t = round(max(float(t), self.last_t), 3)  # workers' messages may arrive out of order
        self.last_t = t
        before = {row.name: self._count(row.name) for row in self.rows}
        for module, entry in snapshot.items():
            self.lines.setdefault(module, set()).update(entry.get("lines", ()))
            self.arcs.setdefault(module, set()).update((a, b) for a, b in entry.get("arcs", ()))
        new: dict[str, int] = {}
        for row in self.rows:
            new[row.name] = self._count(row.name) - before[row.name]
            if new[row.name]:
                for side in SIDES:
                    points = self.series[(row.name, side)]
                    pct = self._side_percent(row.name, side)
                    if pct != points[-1][1]:
                        points.append([t, pct])
        return new

    def _count(self, transform: str) -> int:
        return sum(len(self._reached(m)) for side in SIDES for m in self._measurable[transform][side])

    def _file(self, m: Measurable) -> dict[str, Any]:
        reached = self._reached(m)
        branches = self._reached_branches(m)
        return {
            "file": m.path,
            "module": m.module,
            "lines": sorted(m.lines),
            "reached": sorted(reached),
            "unreached": ranges(m.lines - reached),
            "percent": _percent(len(reached), len(m.lines)),
            "branches": {
                "total": len(m.branches),
                "reached": len(branches),
                "percent": _percent(len(branches), len(m.branches)),
                "unreached": sorted([a, b] for a, b in m.branches - branches),
            },
        }

    def _side(self, transform: str, side: str) -> dict[str, Any]:
        main, *others = self._measurable[transform][side]
        others = [m for m in others if m.lines]  # a helper the row never calls into
        entry = self._file(main)
        files = self._measurable[transform][side]
        points = [list(p) for p in self.series[(transform, side)]]
        if points[-1][0] < self.last_t:
            points.append([self.last_t, points[-1][1]])
        entry.update(
            percent=self._side_percent(transform, side),
            series=points,
            branch_percent=_percent(sum(len(self._reached_branches(m)) for m in files),
                                    sum(len(m.branches) for m in files)),
            files=[self._file(m) for m in others],
        )
        return entry

    def report(self) -> dict[str, dict[str, Any]]:
        """Per transform and side, the report's shape (see the module docstring)."""
        # a one-sided row (a user's pass) has no upstream files
        return {row.name: {side: self._side(row.name, side) for side in SIDES if self._measurable[row.name][side]}
                for row in self.rows}

    def summary(self) -> dict[str, dict[str, float]]:
        """Per transform, the line and branch percent of each side."""
        out: dict[str, dict[str, float]] = {}
        for row in self.rows:
            out[row.name] = {}
            for side in SIDES:
                files = self._measurable[row.name][side]
                out[row.name][side] = self._side_percent(row.name, side)
                out[row.name][f"{side}_branches"] = _percent(
                    sum(len(self._reached_branches(m)) for m in files), sum(len(m.branches) for m in files))
        return out
