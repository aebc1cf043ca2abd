"""Live progress of a campaign: a ``rich`` display on a terminal, one plain line per interval
in a log.

The supervisor owns the clock and the counts; it builds a :class:`Snapshot` as often as it
likes and hands it to :meth:`Progress.update`, which only keeps a reference (or, in a log,
compares two numbers). Rendering happens on rich's refresh thread, a few times a second, or
when a log line is due.

Example::

    progress = Progress(budget_s=600, workers=4)
    progress.start()
    while running:
        progress.update(Snapshot(elapsed_s=..., budget_s=600, cases=..., counts=..., workers=...))
    progress.stop(final_snapshot)

A snapshot handed to :meth:`Progress.update` must not be changed afterwards: the display may
read it from another thread. Build a new one for each update.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

COUNT_KEYS = ("new", "known", "pass", "skip", "timeout", "crash")
WORKER_STATES = ("starting", "running", "shrinking", "replaying", "replaced", "done")
REFRESH_PER_SECOND = 4
_STATE_STYLES = {"starting": "dim", "running": "green", "shrinking": "yellow",
                 "replaying": "cyan", "replaced": "red", "done": "dim"}


@dataclasses.dataclass
class WorkerState:
    """What one worker is doing: its state (one of :data:`WORKER_STATES`) and, while it
    checks a case, the case id, the transform and the engine stage."""

    index: int
    state: str
    case: str | None = None
    transform: str | None = None
    stage: str | None = None


@dataclasses.dataclass
class Snapshot:
    """The campaign at one moment.

    Args:
        elapsed_s: seconds since the campaign started.
        budget_s: the wall-clock budget, or ``None`` when there is none.
        cases: distinct cases checked so far.
        counts: outcomes by kind, keys from :data:`COUNT_KEYS` (a missing key reads as 0).
        workers: one :class:`WorkerState` per worker slot.
        latest_new_origin: the origin of the most recent new divergence, if any.
    """

    elapsed_s: float
    budget_s: float | None
    cases: int
    counts: dict[str, int]
    workers: list[WorkerState]
    latest_new_origin: str | None = None

    @property
    def cases_per_s(self) -> float:
        """Distinct cases per second of elapsed time (0 before any time has passed)."""
        return self.cases / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _seconds(value: float) -> str:
    return f"{value:.0f}s"


def format_line(snapshot: Snapshot) -> str:
    """The one-line form used in logs, e.g.
    ``[  30s/600s] 214 cases (7.1/s) new 0 known 12 pass 1900 skip 40 timeout 0 crash 0``."""
    budget = snapshot.budget_s
    width = max(5, len(_seconds(budget)) if budget is not None else 0)
    clock = f"{_seconds(snapshot.elapsed_s):>{width}}"
    if budget is not None:
        clock += f"/{_seconds(budget)}"
    counts = snapshot.counts
    extra = sorted(k for k in counts if k not in COUNT_KEYS)
    tally = " ".join(f"{k} {counts.get(k, 0)}" for k in (*COUNT_KEYS, *extra))
    line = f"[{clock}] {snapshot.cases} cases ({snapshot.cases_per_s:.1f}/s) {tally}"
    if snapshot.latest_new_origin:
        line += f"; latest new: {snapshot.latest_new_origin}"
    return line


def render(snapshot: Snapshot) -> RenderableType:
    """The terminal display of ``snapshot``: time against the budget (a bar when there is a
    budget), cases and rate, the outcome counts, one row per worker and the latest new
    divergence."""
    budget = snapshot.budget_s
    clock = Table.grid(padding=(0, 1))
    if budget is not None:
        clock.add_row(
            Text("elapsed", style="bold"),
            ProgressBar(total=budget, completed=min(snapshot.elapsed_s, budget), width=40),
            Text(f"{_seconds(snapshot.elapsed_s)} / {_seconds(budget)}"),
        )
    else:
        clock.add_row(Text("elapsed", style="bold"), Text(f"{_seconds(snapshot.elapsed_s)} (no budget)"))

    stats = Text()
    stats.append(f"{snapshot.cases} cases", style="bold")
    stats.append(f"  {snapshot.cases_per_s:.1f} cases/s")
    for key in COUNT_KEYS:
        value = snapshot.counts.get(key, 0)
        style = "bold red" if key in ("new", "crash") and value else ("yellow" if key == "timeout" and value else "")
        stats.append(f"  {key} ")
        stats.append(str(value), style=style)

    workers = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for column in ("worker", "state", "transform", "stage", "case"):
        workers.add_column(column, no_wrap=True, overflow="ellipsis")
    for w in snapshot.workers:
        workers.add_row(str(w.index), Text(w.state, style=_STATE_STYLES.get(w.state, "")),
                        w.transform or "-", w.stage or "-", w.case or "-")

    latest = Text("latest new: ", style="bold")
    if snapshot.latest_new_origin:
        latest.append(snapshot.latest_new_origin, style="red")
    else:
        latest.append("none yet", style="dim")
    return Group(clock, stats, workers, latest)


class Progress:
    """Shows a campaign's progress on ``stream`` (default ``sys.stderr``).

    On a terminal, a ``rich`` live display redrawn :data:`REFRESH_PER_SECOND` times a second
    and left on screen at the end; otherwise one :func:`format_line` every ``interval_s``
    seconds of campaign time and a last one at :meth:`stop`. ``quiet`` shows nothing.

    Args:
        budget_s: the campaign's wall-clock budget, or ``None``.
        workers: how many worker slots the campaign runs.
        quiet: print nothing at all.
        stream: where to write; a stream whose ``isatty()`` is true gets the live display.
        interval_s: seconds between two plain lines.
    """

    def __init__(self, *, budget_s: float | None, workers: int, quiet: bool = False,
                 stream: TextIO | None = None, interval_s: float = 30.0) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
        self.budget_s = budget_s
        self.workers = workers
        self.quiet = quiet
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self._snapshot = Snapshot(elapsed_s=0.0, budget_s=budget_s, cases=0,
                                  counts=dict.fromkeys(COUNT_KEYS, 0),
                                  workers=[WorkerState(i, "starting") for i in range(workers)])
        self._updated = False
        self._live: Live | None = None
        self._started = False
        self._stopped = False
        self._next_line_s = interval_s

    @property
    def is_live(self) -> bool:
        """Whether this shows the live display (a terminal, not quiet)."""
        if self.quiet:
            return False
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False

    def start(self) -> None:
        """Begin showing progress (the live display starts its refresh thread)."""
        if self._started:
            return
        self._started = True
        if self.is_live:
            console = Console(file=self.stream, force_terminal=True)
            self._live = Live(console=console, refresh_per_second=REFRESH_PER_SECOND,
                              transient=False, get_renderable=self._render)
            self._live.start()

    def update(self, snapshot: Snapshot) -> None:
        """Take the newest snapshot. Cheap: the live display draws it on its own thread, and
        in a log a line is written only when ``interval_s`` more seconds have passed."""
        self._snapshot = snapshot
        self._updated = True
        if self._live is not None or self.quiet or not self._started or self._stopped:
            return
        if snapshot.elapsed_s >= self._next_line_s:
            self._write(format_line(snapshot))
            # One line however many intervals the snapshot jumped over.
            self._next_line_s = (math.floor(snapshot.elapsed_s / self.interval_s) + 1) * self.interval_s

    def stop(self, final: Snapshot | None = None) -> None:
        """Show ``final`` (or the last snapshot) once more and stop; the live display stays
        on screen, a log gets a last line."""
        if self._stopped:
            return
        self._stopped = True
        if final is not None:
            self._snapshot = final
            self._updated = True
        if self._live is not None:
            self._live.stop()  # draws the last snapshot, then leaves it in place
            self._live = None
        elif not self.quiet and self._updated:
            self._write(format_line(self._snapshot))

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _render(self) -> RenderableType:
        return render(self._snapshot)

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken log must not stop the campaign it describes.
            pass
