"""Oracles come from plugins: the built-in plugin contributes the metamorphic oracles, and a
plugin named with ``--plugin`` adds one of its own, whose findings carry its own place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conform import plugins
from conform.oracles import metamorphic
from conform.store import Store

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def test_the_builtin_plugin_contributes_the_metamorphic_oracles() -> None:
    assert plugins.collect("conform_oracles")[0] is metamorphic.judge


def _conform(report: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "conform.cli", "run", "--source", "samples", "--max-cases", "2", "--device", "cpu",
         "--report", str(report), "--database", str(report / "db"), "--quiet", *argv],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300,
    )


def test_a_plugin_oracle_reports_through_the_command_line(tmp_path: Path) -> None:
    done = _conform(tmp_path / "with", "--plugin", "_oracle_plugin", "--transform", "_oracle_plugin:overflow")
    assert done.returncode == 1, done.stdout + done.stderr  # new divergences
    with Store.open(tmp_path / "with", create=False) as store:
        outcomes = store.outcomes()
    mine = [o for o in outcomes if o.place == "finite:user"]
    assert mine, [(o.place, o.message) for o in outcomes]
    assert all(o.side == "user" and o.symptom.value == "metamorphic" for o in mine)
    assert all(o.origin.endswith("|finite:user") for o in mine)  # an origin of its own
    assert all("finite:user" in o.notes["metamorphic"] for o in outcomes if o.verdict.value != "pass")
    # the same broken pass without the plugin: the eager oracle alone sees it
    done = _conform(tmp_path / "without", "--transform", "_oracle_plugin:overflow")
    assert done.returncode == 1, done.stdout + done.stderr
    with Store.open(tmp_path / "without", create=False) as store:
        places = {o.place for o in store.outcomes()}
    assert "finite:user" not in places and "user:outputs" in places
