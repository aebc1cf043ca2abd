from __future__ import annotations

import io
import re

from rich.console import Console

from conform.progress import Progress, Snapshot, WorkerState, format_line, render


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _snapshot(elapsed: float, *, budget: float | None = 600.0, cases: int | None = None,
              new: int = 0, origin: str | None = None) -> Snapshot:
    cases = int(elapsed * 7) if cases is None else cases
    return Snapshot(
        elapsed_s=elapsed, budget_s=budget, cases=cases,
        counts={"new": new, "known": 12, "pass": 1900, "skip": 40, "timeout": 3, "crash": 0},
        workers=[
            WorkerState(0, "running", case="random-1f3a", transform="split_module", stage="execute"),
            WorkerState(1, "shrinking", case="random-77b0", transform="const_fold", stage="compare"),
            WorkerState(2, "replaced"),
        ],
        latest_new_origin=origin,
    )


def test_cases_per_s_is_cases_over_elapsed_and_zero_at_start() -> None:
    assert _snapshot(30.0, cases=214).cases_per_s == 214 / 30.0
    assert _snapshot(0.0, cases=0).cases_per_s == 0.0


def test_plain_line_has_clock_budget_rate_and_every_count() -> None:
    line = format_line(_snapshot(30.0, cases=214))
    assert line == "[  30s/600s] 214 cases (7.1/s) new 0 known 12 pass 1900 skip 40 timeout 3 crash 0"
    assert format_line(_snapshot(30.0, budget=None, cases=214)).startswith("[  30s] 214 cases")
    with_new = format_line(_snapshot(30.0, new=1, origin="split_module/compare/mismatch"))
    assert "new 1" in with_new and with_new.endswith("latest new: split_module/compare/mismatch")


def test_log_gets_one_line_per_interval_and_a_last_line_at_stop() -> None:
    out = io.StringIO()
    progress = Progress(budget_s=600, workers=3, stream=out, interval_s=30)
    progress.start()
    # The supervisor updates several times a second; only interval boundaries print.
    for tenth in range(0, 951):
        progress.update(_snapshot(tenth / 10))
    lines = out.getvalue().splitlines()
    assert [re.match(r"\[\s*(\d+)s/600s\]", line).group(1) for line in lines] == ["30", "60", "90"]
    progress.stop(_snapshot(95.0, cases=700))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("[  95s/600s] 700 cases (7.4/s)")
    progress.stop()  # a second stop prints nothing more
    assert len(out.getvalue().splitlines()) == 4


def test_a_snapshot_that_jumps_several_intervals_prints_one_line() -> None:
    out = io.StringIO()
    progress = Progress(budget_s=None, workers=1, stream=out, interval_s=1)
    progress.start()
    progress.update(_snapshot(0.5, budget=None))
    progress.update(_snapshot(4.2, budget=None))
    progress.update(_snapshot(4.9, budget=None))
    progress.update(_snapshot(5.0, budget=None))
    assert [line.split("]")[0] for line in out.getvalue().splitlines()] == ["[   4s", "[   5s"]


def test_stop_without_final_repeats_the_last_snapshot() -> None:
    out = io.StringIO()
    progress = Progress(budget_s=600, workers=3, stream=out, interval_s=30)
    progress.start()
    progress.update(_snapshot(12.0, cases=50))
    assert out.getvalue() == ""
    progress.stop()
    assert out.getvalue() == format_line(_snapshot(12.0, cases=50)) + "\n"


def test_quiet_prints_nothing_on_a_log_or_a_terminal() -> None:
    for stream in (io.StringIO(), _Terminal()):
        progress = Progress(budget_s=600, workers=3, quiet=True, stream=stream, interval_s=1)
        progress.start()
        for second in range(10):
            progress.update(_snapshot(float(second), new=1, origin="x/y/z"))
        progress.stop(_snapshot(10.0))
        assert stream.getvalue() == ""


def test_render_shows_clock_counts_workers_and_latest_new() -> None:
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    console.print(render(_snapshot(30.0, cases=214, new=2, origin="split_module/compare/mismatch")))
    text = console.export_text()
    assert "30s / 600s" in text
    assert "214 cases" in text and "7.1 cases/s" in text
    for field in ("new 2", "known 12", "pass 1900", "skip 40", "timeout 3", "crash 0"):
        assert field in text
    rows = [line.split() for line in text.splitlines()]
    assert ["0", "running", "split_module", "execute", "random-1f3a"] in rows
    assert ["1", "shrinking", "const_fold", "compare", "random-77b0"] in rows
    assert ["2", "replaced", "-", "-", "-"] in rows
    assert "latest new: split_module/compare/mismatch" in text


def test_render_without_budget_has_no_bar_and_says_so() -> None:
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    console.print(render(_snapshot(42.0, budget=None)))
    text = console.export_text()
    assert "42s (no budget)" in text and "/ 600s" not in text
    assert "latest new: none yet" in text


def test_terminal_gets_the_live_display_and_keeps_the_final_frame() -> None:
    term = _Terminal()
    progress = Progress(budget_s=600, workers=3, stream=term, interval_s=1)
    assert progress.is_live
    progress.start()
    for second in range(5):
        progress.update(_snapshot(float(second)))
    progress.stop(_snapshot(600.0, cases=4321, new=1, origin="const_fold/compare/mismatch"))
    out = term.getvalue()
    assert "\x1b[" in out  # drawn with terminal control codes, not plain log lines
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "[  1s/600s]" not in plain
    final = plain[plain.rindex("elapsed"):]
    assert "600s / 600s" in final and "4321 cases" in final
    assert "latest new: const_fold/compare/mismatch" in final
    assert "shrinking" in final and "const_fold" in final
