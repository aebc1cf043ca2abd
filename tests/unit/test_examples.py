"""examples/fold_constants works as the README shows it: the campaign through the command
line, and its pytest test through the pytest plugin's --conform-plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fold_constants"
PLUGIN = "examples.fold_constants.plugin"


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *([path] if path else [])])}


@pytest.mark.slow
def test_the_example_campaign_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conform.cli", "run", "--plugin", PLUGIN, "--transform", "fold_constants",
         "--max-cases", "20", "--report", str(tmp_path / "rep"), "--database", str(tmp_path / "db"), "--quiet"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 cases, 20 outcomes" in done.stdout


def test_the_example_plugin_is_listed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from conform.cli import main

    monkeypatch.syspath_prepend(str(ROOT))  # examples/ is not installed with the package

    assert main(["list", "known", "--plugin", PLUGIN]) == 0
    assert "fold-constants-identity-aliases  [fold_constants, by-design]" in capsys.readouterr().out


@pytest.mark.slow
def test_the_example_test_passes_under_the_pytest_plugin(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _env().items():
        monkeypatch.setenv(name, value)
    shutil.copy(EXAMPLE / "test_fold_constants.py", pytester.path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--conform-plugin", PLUGIN)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*11 outcomes: known 1, pass 10*"])


@pytest.mark.slow
def test_without_the_plugin_the_example_row_is_unknown(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    shutil.copy(EXAMPLE / "test_fold_constants.py", pytester.path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--conform-transform", "fold_constants")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown transform 'fold_constants'*"])


PASS_TEST = '''
import pytest
from conform.case import Case


@pytest.mark.parametrize("sample", ["two_adds", "linear_relu"])
def test_my_pass(conform, conform_transform, sample):
    conform.assert_conforms(Case("samples", {"sample": sample}), conform_transform)
'''


@pytest.mark.slow
def test_the_pytest_plugin_takes_a_pass_by_module_and_attribute(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    pytester.makepyfile(test_mine=PASS_TEST)
    name = "examples.fold_constants.passes:fold_constants"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--conform-transform", name)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*test_my_pass?{name}-two_adds? PASSED*"])
