"""End to end, through the command line: a campaign survives whatever a case does.

Each test runs ``conform run`` in a subprocess, as a user would, on the hostile cases of
``tests/hostile_cases.py`` (a forward that segfaults, one that never returns, one that
sleeps) or on planted rows (``--plugin conform.selfcheck``), and checks what was recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conform.store import Store

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "tests.hostile_cases"


def _cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "conform.cli", *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def conform(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(*argv), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(_cmd(*argv), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def outcomes(report: Path) -> list:
    with Store.open(report) as store:
        return store.outcomes()


def summary(report: Path) -> dict:
    return json.loads((report / "summary.json").read_text())


COMMON = ("--quiet", "--device", "cpu", "--database", "", "--no-coverage")


@pytest.mark.slow
def test_a_segfaulting_case_is_recorded_and_the_campaign_goes_on(tmp_path: Path) -> None:
    report = tmp_path / "r"
    done = conform("run", "--case", f"{HOSTILE}:segfault_forward", "--source", "factory", "--source", "samples",
                   "--transform", "shape_prop", "--max-cases", "6", "--report", str(report), *COMMON)
    assert done.returncode == 1, done.stderr
    assert (report / "index.html").exists() and (report / "summary.json").exists()
    found = outcomes(report)
    crashes = [o for o in found if o.symptom and o.symptom.value == "crash" and o.exception == "SIGSEGV"]
    assert crashes, [o.origin for o in found]
    crash = crashes[0]
    assert crash.place == "worker:eager" and crash.stage.value == "generate"
    assert crash.spec == {"factory": f"{HOSTILE}:segfault_forward"}
    assert crash.repro and (report / crash.repro).exists()
    assert crash.notes["kills_worker_on_replay"] is True
    # the other source's cases were checked too: the worker was replaced
    assert any(o.source == "samples" and o.verdict.value == "pass" for o in found)


@pytest.mark.slow
def test_two_workers_one_killed_the_other_carries_on(tmp_path: Path) -> None:
    report = tmp_path / "r"
    done = conform("run", "--case", f"{HOSTILE}:segfault_forward", "--source", "factory", "--source", "samples",
                   "--transform", "shape_prop", "--max-cases", "8", "--workers", "2", "--report", str(report),
                   *COMMON)
    assert done.returncode == 1, done.stderr
    found = outcomes(report)
    assert any(o.exception == "SIGSEGV" for o in found)
    assert sum(1 for o in found if o.verdict.value == "pass") >= 2


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["busy_loop_forward", "sleeping_forward"])
def test_a_case_that_never_returns_is_a_timeout_and_the_budget_holds(tmp_path: Path, factory: str) -> None:
    report = tmp_path / "r"
    started = time.monotonic()
    done = conform("run", "--case", f"{HOSTILE}:{factory}", "--transform", "shape_prop", "--budget", "60",
                   "--max-cases", "2", "--stage-timeout", "2", "--report", str(report), *COMMON)
    assert time.monotonic() - started < 90
    assert done.returncode == 1, done.stderr
    timeouts = [o for o in outcomes(report) if o.symptom and o.symptom.value == "timeout"]
    assert timeouts and all(o.verdict.value == "fail" for o in timeouts)
    # the in-process alarm or, failing that, the supervisor's watchdog caught the eager run
    assert timeouts[0].place in ("eager", "worker:eager")


@pytest.mark.slow
def test_a_transform_stuck_in_native_code_is_killed_and_recorded_as_its_timeout(tmp_path: Path) -> None:
    # the reference side spins in a z3 solve, where the in-process alarm cannot fire
    report = tmp_path / "r"
    started = time.monotonic()
    done = conform("run", "--plugin", "conform.selfcheck", "--source", "samples", "--transform",
                   "planted_solver_spins", "--max-cases", "1", "--report", str(report), *COMMON)
    assert time.monotonic() - started < 90
    assert done.returncode == 1, done.stderr
    (timeout,) = [o for o in outcomes(report) if o.symptom and o.symptom.value == "timeout"]
    assert timeout.place == "worker:transform-reference"
    assert timeout.stage.value == "transform-reference"
    assert not any(o.verdict.value == "pass" for o in outcomes(report))


def test_both_sides_timing_out_is_never_a_pass(tmp_path: Path) -> None:
    report = tmp_path / "r"
    done = conform("run", "--plugin", "conform.selfcheck", "--source", "samples", "--transform",
                   "planted_sleeps", "--max-cases", "2", "--report", str(report), *COMMON)
    assert done.returncode == 1, done.stderr
    found = outcomes(report)
    assert found and not any(o.verdict.value == "pass" for o in found)
    assert any(o.symptom.value == "timeout" and o.place == "reference" for o in found)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_campaign_mid_solve_and_the_report_says_so(tmp_path: Path, sig: int, code: int) -> None:
    report = tmp_path / "r"
    proc = start("run", "--plugin", "conform.selfcheck", "--source", "samples", "--transform",
                 "planted_solver_spins", "--transform", "shape_prop", "--budget", "120", "--stage-timeout", "100",
                 "--report", str(report), *COMMON)
    _wait_for_worker_stage(proc, report)
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "the campaign must stop within 5 s"
    assert proc.returncode == code, err
    assert "INTERRUPTED" in out
    assert summary(report)["interrupted"] == signal.Signals(sig).name
    assert (report / "index.html").exists()


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _wait_for_worker_stage(proc: subprocess.Popen[str], report: Path, seconds: float = 60) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        workers = _worker_pids(proc.pid)
        # give the worker time to start and reach the solve (witness replay comes first)
        if workers and time.monotonic() > deadline - seconds + 12:
            return workers
        time.sleep(0.5)
    pytest.fail("no worker started")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find worker processes")
def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    proc = start("run", "--source", "samples", "--transform", "shape_prop", "--budget", "120", "--workers", "2",
                 "--report", str(tmp_path / "r"), *COMMON)
    workers = _wait_for_worker_stage(proc, tmp_path / "r")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}/stat").exists()
             and (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
    assert not alive, f"workers {alive} outlived their supervisor"


def test_workers_are_capped_at_the_cores_and_the_case_count(tmp_path: Path) -> None:
    done = conform("run", "--source", "samples", "--transform", "shape_prop", "--workers", "999",
                   "--max-cases", "1", "--report", str(tmp_path / "r"), *COMMON)
    assert done.returncode == 0, done.stderr
    assert "note: --workers 999 capped at 1" in done.stderr
    assert summary(tmp_path / "r")["workers"] == 1


def test_exit_codes_are_documented_in_help() -> None:
    done = conform("run", "--help")
    for line in ("0    nothing new", "1    new divergences", "2    usage or bad input",
                 "3    the campaign could not finish", "130", "143"):
        assert line in done.stdout
