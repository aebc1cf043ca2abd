from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conform.cli import main
from conform.store import Store


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _argparse_exit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    return int(info.value.code), capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--budget", "0"], "budget must be a positive number of seconds, got '0'"),
        (["run", "--budget", "soon"], "budget must be a positive number of seconds, got 'soon'"),
        (["run", "--budget", "inf"], "budget must be a positive number"),
        (["run", "--max-cases", "-3"], "expected a positive integer, got '-3'"),
        (["run", "--workers", "many"], "workers must be a positive integer or 'auto'"),
        (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["list", "everything"], "invalid choice: 'everything'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_options_exit_2_on_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, err = _argparse_exit(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_transform_lists_choices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "run", "--transform", "splitt", "--report", str(tmp_path / "r"))
    assert code == 2
    assert "unknown transform 'splitt'" in err and "split_module" in err and "shape_prop" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_unknown_source_lists_choices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "run", "--source", "nope", "--report", str(tmp_path))
    assert code == 2 and "unknown source 'nope'" in err and "samples" in err


def test_cuda_without_gpu_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = _run(capsys, "run", "--device", "cuda", "--report", str(tmp_path))
    assert code == 2 and "no CUDA device" in err


@pytest.fixture
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = tmp_path_factory.mktemp("report")
    code = main(["run", "--source", "samples", "--transform", "shape_prop", "--max-cases", "4",
                 "--report", str(report), "--device", "cpu", "--quiet"])
    assert code == 0
    return report


def test_run_writes_the_three_files(recorded: Path) -> None:
    summary = json.loads((recorded / "summary.json").read_text())
    assert summary["cases"] == 4
    assert summary["counts"] == {"pass": 4}
    assert summary["per_source"] == {"samples": {"pass": 4}}
    assert summary["environment"]["torch"]
    assert len(Store.open(recorded).outcomes()) == 4
    assert not (recorded / "results.jsonl").exists() and not (recorded / "parts").exists()
    assert "fx-conform conformance report" in (recorded / "index.html").read_text()


def test_replay_reproduces_a_recorded_outcome(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = Store.open(recorded).outcomes()[0]
    capsys.readouterr()
    code, out, _ = _run(capsys, "replay", first.key[:10], "--report", str(recorded))
    assert code == 0
    assert "recorded: pass" in out and "shape_prop" in out


def test_replay_unknown_key(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "replay", "ffffffffff", "--report", str(recorded))
    assert code == 2 and "no recorded outcome has key" in err


def test_corrupt_results_lose_nothing(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = recorded / "results.jsonl"
    assert _run(capsys, "export", "--jsonl", str(results), "--report", str(recorded))[0] == 0
    results.write_text(results.read_text() + "garbage\n")
    before = {p: p.read_bytes() for p in recorded.rglob("*") if p.is_file()}
    code, _, err = _run(capsys, "replay", "abc", "--report", str(recorded))
    assert code == 2 and "results.jsonl:5 is not a valid outcome record" in err
    code, _, err = _run(capsys, "run", "--transform", "bogus", "--report", str(recorded))
    assert code == 2
    assert {p: p.read_bytes() for p in recorded.rglob("*") if p.is_file()} == before


def test_report_rebuilds_from_the_store(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (recorded / "index.html").unlink()
    (recorded / "summary.json").unlink()
    code, out, _ = _run(capsys, "report", "--report", str(recorded))
    assert code == 0 and "4 cases" in out
    assert (recorded / "index.html").exists() and json.loads((recorded / "summary.json").read_text())["cases"] == 4
    assert len(Store.open(recorded).outcomes()) == 4


def test_run_with_a_divergence_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "run", "--source", "samples", "--transform", "planted_upstream_crash",
                        "--plugin", "conform.selfcheck", "--quiet",
                        "--max-cases", "3", "--report", str(tmp_path), "--device", "cpu", "--no-shrink")
    assert code == 1
    assert "NEW  planted_upstream_crash|transform-upstream|crash|KeyError" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["new_divergences"] == 3
    assert all(d["repro"] for d in summary["divergences"])


@pytest.mark.parametrize("what", ["transforms", "sources", "known"])
def test_list(capsys: pytest.CaptureFixture[str], what: str) -> None:
    code, out, _ = _run(capsys, "list", what)
    assert code == 0 and out.strip()


def test_list_sources_shows_counts(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "list", "sources")
    line = next(text for text in out.splitlines() if text.startswith("samples"))
    assert " 5 " in line


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "conform"
    run = subprocess.run([str(exe), "list", "transforms"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "split_module" in run.stdout
