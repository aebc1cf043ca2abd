"""The pytest plugin end to end, in a separate pytest process (with and without xdist)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TEST_FILE = '''
import pytest
from conform.case import Case

SAMPLES = ["two_adds", "linear_relu", "tuple_out", "inplace_input"]


@pytest.mark.parametrize("sample", SAMPLES)
def test_conforms(conform, conform_transform, sample):
    params = {"partition": {"add": 1}} if conform_transform == "split_module" else {}
    conform.assert_conforms(Case("samples", {"sample": sample}), conform_transform, params)


def test_planted_divergence_fails_with_the_engine_message(conform, monkeypatch):
    from conform.selfcheck import PLANTED
    import conform.registry as registry

    monkeypatch.setattr(registry, "TRANSFORMS", (*registry.TRANSFORMS, PLANTED["planted_upstream_crash"]))
    conform.assert_conforms(Case("samples", {"sample": "two_adds"}), "planted_upstream_crash", {})


@pytest.mark.cuda
def test_needs_a_gpu():
    import torch
    assert torch.cuda.is_available()
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_user=TEST_FILE)
    return pytester


def _summary(report: Path) -> dict:
    return json.loads((report / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_outcomes_reach_one_report(project: pytest.Pytester, workers: str) -> None:
    report = project.path / "rep"
    result = project.runpytest_subprocess(
        "-n", workers, "-p", "no:cacheprovider", "--conform-report", str(report),
        "--conform-transform", "split_module", "--conform-transform", "shape_prop",
        "--conform-device", "all", "--conform-profile", "pr",
    )
    import torch

    skipped = 0 if torch.cuda.is_available() else 1
    result.assert_outcomes(passed=8, failed=1, skipped=skipped)
    result.stdout.fnmatch_lines(["*planted_upstream_crash diverges on samples:two_adds*",
                                 "*replay: conform replay*"])
    summary = _summary(report)
    assert summary["counts"] == {"pass": 8, "fail": 1}
    assert summary["per_transform"]["split_module"] == {"pass": 4}
    assert (report / "index.html").exists()
    from conform.store import Store

    assert len(Store.open(report).outcomes()) == 9
    (divergence,) = summary["divergences"]
    assert (report / divergence["repro"]).exists()
    result.stdout.fnmatch_lines(["*fx-conform*", "*9 outcomes: fail 1, pass 8*"])


@pytest.mark.slow
def test_unknown_transform_option_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--conform-transform", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown transform 'nope'*split_module*"])


@pytest.mark.slow
def test_without_report_option_nothing_is_written(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-k", "two_adds and shape_prop", "--conform-transform", "shape_prop")
    result.assert_outcomes(passed=1, deselected=5)
    assert not (project.path / "reports").exists()
