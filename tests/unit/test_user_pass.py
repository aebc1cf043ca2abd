"""A pass of a user's own as a one-sided row: built from ``MODULE:ATTR``, checked against
eager, run by a campaign's workers, listed, replayed only when named again, and repro'd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conform import plugins
from conform.case import Case
from conform.cli import main
from conform.engine import check
from conform.errors import UsageError
from conform.implementations import USER, Implementation
from conform.user_pass import row_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SAMPLE = Case("samples", {"sample": "two_adds"})


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("attr", "convention"), [
    ("add_to_sub", "graph_module"),
    ("spell_add_as_torch_add", "graph_module"),
    ("AddsAsTorchAdd", "pass_base"),
    ("ADDS_AS_TORCH_ADD", "pass_base"),
    ("DoubleRelu", "transformer"),
])
def test_each_kind_of_pass_is_a_one_sided_row(attr: str, convention: str) -> None:
    row = row_for(f"_user_passes:{attr}")
    assert (row.name, row.convention, row.sides, row.one_sided) == (f"_user_passes:{attr}", convention, (USER,), True)
    assert row.modules == ()


@pytest.mark.parametrize("attr", ["spell_add_as_torch_add", "AddsAsTorchAdd", "ADDS_AS_TORCH_ADD", "DoubleRelu"])
def test_a_correct_pass_passes(attr: str) -> None:
    for sample in ("two_adds", "linear_relu"):
        outcomes = check(Case("samples", {"sample": sample}), row_for(f"_user_passes:{attr}"))
        assert [o.verdict.value for o in outcomes] == ["pass"], outcomes[0].describe()
        assert set(outcomes[0].notes["seconds"]) == {USER}


def test_a_wrong_pass_is_an_eager_mismatch_of_its_one_side() -> None:
    (outcome,) = check(SAMPLE, row_for("_user_passes:add_to_sub"))
    assert (outcome.verdict.value, outcome.stage.value, outcome.symptom.value) == ("fail", "compare", "eager-mismatch")
    assert outcome.place == "user:outputs" and outcome.node == "add"
    assert "conform replay" in outcome.describe() and "--transform _user_passes:add_to_sub" in outcome.describe()


def test_the_user_side_resolves_any_module_path() -> None:
    from torch.fx.experimental.optimization import remove_dropout

    assert Implementation(USER).resolve("torch.fx.experimental.optimization:remove_dropout") is remove_dropout
    with pytest.raises(UsageError, match="unknown implementation 'elsewhere'"):
        Implementation("elsewhere")


@pytest.mark.parametrize(("name", "needle"), [
    ("_user_passes:NOT_A_PASS", "_user_passes:NOT_A_PASS is an object of type int, not a pass: name a "
                                "GraphModule -> GraphModule function"),
    ("_user_passes:Plain", "_user_passes:Plain is the class Plain, not a pass"),
    ("_user_passes:missing", "cannot load the pass _user_passes:missing: AttributeError"),
    ("no_such_module_here:fold", "cannot load the pass no_such_module_here:fold: ModuleNotFoundError"),
])
def test_a_name_that_is_no_pass_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                        needle: str) -> None:
    code, _, err = _run(capsys, "run", "--transform", name, "--max-cases", "1", "--report", str(tmp_path / "r"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_list_shows_a_pass_named_with_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "list", "transforms", "--plugin", "_user_passes:DoubleRelu")
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("_user_passes:DoubleRelu")]
    assert "transformer" in line and "[device,eager]" in line and "relu(x) as relu(relu(x))" in line


@pytest.fixture
def recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict]:
    """A two-worker campaign over the samples with the wrong pass, named only by --transform."""
    report = tmp_path / "rep"
    code, out, _ = _run(capsys, "run", "--transform", "_user_passes:add_to_sub", "--source", "samples",
                        "--max-cases", "4", "--workers", "2", "--report", str(report), "--quiet", "--no-shrink",
                        "--device", "cpu", "--database", str(tmp_path / "db"), "--no-coverage")
    assert code == 1, out
    assert "NEW  _user_passes:add_to_sub|compare|eager-mismatch|-|user:outputs" in out
    summary = json.loads((report / "summary.json").read_text())
    plugins.reset()  # what follows starts from a process that has imported no pass
    return report, summary


def test_replay_imports_a_recorded_pass_only_when_named(recorded: tuple[Path, dict],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    report, summary = recorded
    key = summary["divergences"][0]["key"]
    code, _, err = _run(capsys, "replay", key, "--report", str(report))
    assert code == 2
    assert f"conform replay {key} --report {report} --transform _user_passes:add_to_sub" in err
    assert "_user_passes" not in sys.modules or "_user_passes:add_to_sub" not in plugins.loaded()
    for option in ("--transform", "--plugin"):
        code, out, _ = _run(capsys, "replay", key, "--report", str(report), option, "_user_passes:add_to_sub")
        assert code == 1 and "eager-mismatch" in out
        plugins.reset()


def test_the_repro_script_loads_the_pass(recorded: tuple[Path, dict]) -> None:
    report, summary = recorded
    script = report / summary["divergences"][0]["repro"]
    text = " ".join(script.read_text().split())
    assert "applies the pass _user_passes:add_to_sub and compares it with the eager module" in text
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=report,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert "eager-mismatch" in done.stdout


def test_replay_of_a_plugin_row_asks_for_the_plugin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "rep"
    code, _, _ = _run(capsys, "run", "--plugin", "conform.selfcheck", "--transform", "planted_upstream_crash",
                      "--source", "samples", "--max-cases", "1", "--report", str(report), "--quiet",
                      "--no-shrink", "--device", "cpu", "--database", str(tmp_path / "db"), "--no-coverage")
    assert code == 1
    key = json.loads((report / "summary.json").read_text())["divergences"][0]["key"]
    plugins.reset()
    code, _, err = _run(capsys, "replay", key, "--report", str(report))
    assert code == 2 and "planted_upstream_crash" in err and "--plugin MODULE" in err
    code, out, _ = _run(capsys, "replay", key, "--report", str(report), "--plugin", "conform.selfcheck")
    assert code == 1 and "KeyError" in out


def test_coverage_is_measured_in_the_pass_module() -> None:
    from conform.coverage_map import measurable, modules_for

    row = row_for("_user_passes:DoubleRelu")
    assert modules_for(row) == {"upstream": [], "reference": ["_user_passes"]}
    (entry,) = measurable(row)["reference"]
    assert entry.module == "_user_passes" and entry.lines and measurable(row)["upstream"] == []
